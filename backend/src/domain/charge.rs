//! A card charge's states (stored as `card_charges.status`), ours, not the processor's: an
//! intent's own status (`requires_payment_method`, …) is the processor's word and is mapped
//! onto these.

/// Where a card charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeStatus {
    /// Recorded; the processor has not answered for good yet (or was not reached).
    Pending,
    /// Waiting for the driver's 3-D Secure step.
    RequiresAction,
    /// Paid, and what it bought applied.
    Succeeded,
    /// Declined.
    Failed,
    /// Canceled (by the processor, or the 3-D Secure step timed out).
    Canceled,
    /// Paid, but what it bought could not be given: the money goes back.
    RefundDue,
    /// Never reached the processor, and given up by the sweeper.
    Abandoned,
}

impl ChargeStatus {
    /// Every status.
    pub const ALL: [ChargeStatus; 7] = [
        ChargeStatus::Pending,
        ChargeStatus::RequiresAction,
        ChargeStatus::Succeeded,
        ChargeStatus::Failed,
        ChargeStatus::Canceled,
        ChargeStatus::RefundDue,
        ChargeStatus::Abandoned,
    ];

    /// The stored (and answered) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeStatus::Pending => "pending",
            ChargeStatus::RequiresAction => "requires_action",
            ChargeStatus::Succeeded => "succeeded",
            ChargeStatus::Failed => "failed",
            ChargeStatus::Canceled => "canceled",
            ChargeStatus::RefundDue => "refund_due",
            ChargeStatus::Abandoned => "abandoned",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<ChargeStatus> {
        ChargeStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Still open: the processor may yet charge it (the sweeper and a retry resume it).
    pub fn is_open(self) -> bool {
        matches!(self, ChargeStatus::Pending | ChargeStatus::RequiresAction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for c in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(c.as_str()), Some(c));
        }
        assert_eq!(ChargeStatus::parse("requires_payment_method"), None);
        assert!(ChargeStatus::Pending.is_open() && ChargeStatus::RequiresAction.is_open());
        assert!(!ChargeStatus::RefundDue.is_open() && !ChargeStatus::Succeeded.is_open());
    }
}
