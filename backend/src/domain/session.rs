//! A parking session's states: where it was bought, and why it ended.

/// Where a session was bought (stored as `sessions.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionChannel {
    /// In the app, from the wallet or by card.
    App,
    /// By SMS, charged to the phone balance.
    Sms,
    /// In cash, taken by a warden on the driver's behalf.
    WardenCash,
}

impl SessionChannel {
    /// The stored (and answered) name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionChannel::App => "app",
            SessionChannel::Sms => "sms",
            SessionChannel::WardenCash => "warden_cash",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<SessionChannel> {
        [SessionChannel::App, SessionChannel::Sms, SessionChannel::WardenCash].into_iter().find(|c| c.as_str() == s)
    }
}

/// Why a session ended (stored as `sessions.end_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Stopped by its driver (unused whole turns refunded): the car should have left.
    Stopped,
    /// Its paid time and grace ran out.
    Expired,
}

impl EndReason {
    /// The stored (and answered) name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::Expired => "expired",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<EndReason> {
        [EndReason::Stopped, EndReason::Expired].into_iter().find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for c in [SessionChannel::App, SessionChannel::Sms, SessionChannel::WardenCash] {
            assert_eq!(SessionChannel::parse(c.as_str()), Some(c));
        }
        for r in [EndReason::Stopped, EndReason::Expired] {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(SessionChannel::parse("warden"), None);
        assert_eq!(EndReason::parse("Stopped"), None);
    }
}
