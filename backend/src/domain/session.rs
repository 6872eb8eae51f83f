//! A parking session's states: where it was bought, and why it ended.

stored_names! {
    /// Where a session was bought (stored as `sessions.channel`).
    pub enum SessionChannel {
        /// In the app, from the wallet or by card.
        App => "app",
        /// By SMS, charged to the phone balance.
        Sms => "sms",
        /// In cash, taken by a warden on the driver's behalf.
        WardenCash => "warden_cash",
        /// Paid by a warden on the driver's behalf from the warden's prepaid float.
        WardenFloat => "warden_float",
    }
}

stored_names! {
    /// Why a session ended (stored as `sessions.end_reason`).
    pub enum EndReason {
        /// Stopped by its driver (unused whole turns refunded): the car should have left.
        Stopped => "stopped",
        /// Its paid time and grace ran out.
        Expired => "expired",
    }
}

stored_names! {
    /// What a payment bought: a new session or more time on one (stored as
    /// `cash_collections.kind`, answered as a receipt's `kind`).
    pub enum PaymentKind {
        /// A new session.
        Start => "start",
        /// More time on a session.
        Extension => "extension",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for &c in SessionChannel::ALL {
            assert_eq!(SessionChannel::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<SessionChannel>(&format!("\"{c}\"")).unwrap(), c);
        }
        for &r in EndReason::ALL {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
        }
        assert!(serde_json::from_str::<SessionChannel>("\"App\"").is_err());
        for &k in PaymentKind::ALL {
            assert_eq!(PaymentKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SessionChannel::parse("warden"), None);
        assert_eq!(EndReason::parse("Stopped"), None);
    }
}
