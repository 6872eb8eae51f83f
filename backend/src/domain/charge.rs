//! A card charge's states (stored as `card_charges.status`), ours, not the processor's: an
//! intent's own status (`requires_payment_method`, …) is the processor's word and is mapped
//! onto these.

stored_names! {
    /// Where a card charge stands.
    pub enum ChargeStatus {
        /// Recorded; the processor has not answered for good yet (or was not reached).
        Pending => "pending",
        /// Waiting for the driver's 3-D Secure step.
        RequiresAction => "requires_action",
        /// Paid, and what it bought applied.
        Succeeded => "succeeded",
        /// Declined.
        Failed => "failed",
        /// Canceled (by the processor, or the 3-D Secure step timed out).
        Canceled => "canceled",
        /// Paid, but what it bought could not be given: the money goes back.
        RefundDue => "refund_due",
        /// Never reached the processor, and given up by the sweeper.
        Abandoned => "abandoned",
    }
}

impl ChargeStatus {
    /// Still open: the processor may yet charge it (the sweeper and a retry resume it).
    pub fn is_open(self) -> bool {
        matches!(self, ChargeStatus::Pending | ChargeStatus::RequiresAction)
    }
}

stored_names! {
    /// Where a refund through the processor stands (stored as `refunds.status`).
    pub enum RefundStatus {
        /// Recorded, not submitted to the processor yet.
        Pending => "pending",
        /// Submitted; the processor has not settled it.
        Submitted => "submitted",
        /// The money went back to the card.
        Succeeded => "succeeded",
        /// The processor failed it: the amount went to the driver's wallet instead.
        Failed => "failed",
    }
}

stored_names! {
    /// What a refund through the processor pays back (stored as `refunds.source`).
    pub enum RefundSource {
        /// A card charge for parking.
        CardCharge => "card_charge",
        /// A wallet top-up.
        Topup => "topup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for &r in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(r.as_str()), Some(r));
        }
        for &c in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(c.as_str()), Some(c));
        }
        assert_eq!(ChargeStatus::parse("requires_payment_method"), None);
        assert!(ChargeStatus::Pending.is_open() && ChargeStatus::RequiresAction.is_open());
        assert!(!ChargeStatus::RefundDue.is_open() && !ChargeStatus::Succeeded.is_open());
    }
}
