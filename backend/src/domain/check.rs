//! Plate checks: what a warden's handheld answers for a plate at a point. Pure logic: the
//! caller fetches the plate's sessions (from the live state or the database) and the time.

use chrono::{DateTime, Utc};
use iparking_mobile_api::CheckVerdict;

use super::session::EndReason;

/// An expired session is reported as `expired` (rather than `unpaid`) for this long after
/// its paid time ended.
pub const EXPIRED_LOOKBACK_HOURS: i64 = 12;

/// What is known of one session of the plate, wherever it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFact {
    /// Session id.
    pub session_id: i64,
    /// Point id.
    pub point_id: i64,
    /// Point code.
    pub point_code: String,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Paid until plus grace.
    pub expires_at: DateTime<Utc>,
    /// Still active (not stopped or closed by expiry).
    pub active: bool,
    /// Why it ended, when it has.
    pub end_reason: Option<EndReason>,
}

/// Where a check was made: on a handheld online, or offline and sent later in a sync batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSource {
    /// Answered at once (`now`).
    Online,
    /// Made offline at the device's time, applied from `/v1/warden/sync`.
    Sync,
}

impl CheckSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckSource::Online => "online",
            CheckSource::Sync => "sync",
        }
    }

    /// The source a stored name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [CheckSource::Online, CheckSource::Sync].into_iter().find(|s| s.as_str() == name)
    }
}

/// A session's standing at `at` by its times alone: paid, in its grace, or past it.
pub fn time_verdict(paid_until: DateTime<Utc>, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> CheckVerdict {
    if at < paid_until {
        CheckVerdict::Valid
    } else if at < expires_at {
        CheckVerdict::Grace
    } else {
        CheckVerdict::Expired
    }
}

/// The outcome of a check, before it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The verdict.
    pub verdict: CheckVerdict,
    /// The session it rests on, if any.
    pub session: Option<SessionFact>,
    /// Whole minutes past the paid time (grace, expired).
    pub minutes_over: Option<i64>,
}

/// The verdict for a plate at `point_id` at `at`, from the plate's session covering `at`
/// (started by then, not yet ended or past its grace: at any point) and its latest session
/// at this point started by then.
pub fn verdict(
    point_id: i64,
    covering: Option<&SessionFact>,
    last_here: Option<&SessionFact>,
    at: DateTime<Utc>,
) -> Finding {
    let over = |s: &SessionFact| ((at - s.paid_until).num_seconds().max(0)) / 60;
    if let Some(s) = covering {
        if s.point_id == point_id {
            // Past its grace, it is still active: the expiry job has not closed it yet.
            let verdict = time_verdict(s.paid_until, s.expires_at, at);
            let minutes_over = (verdict != CheckVerdict::Valid).then(|| over(s));
            return Finding { verdict, session: Some(s.clone()), minutes_over };
        }
        if at < s.expires_at {
            return Finding { verdict: CheckVerdict::Elsewhere, session: Some(s.clone()), minutes_over: None };
        }
    }
    if let Some(s) = last_here.filter(|s| s.point_id == point_id) {
        // Stopped by the driver: the car should have left, so a car here is unpaid.
        let stopped = s.end_reason == Some(EndReason::Stopped);
        let recent = at - s.paid_until < chrono::Duration::hours(EXPIRED_LOOKBACK_HOURS);
        if !stopped && at >= s.paid_until && recent {
            let v = time_verdict(s.paid_until, s.expires_at, at);
            return Finding { verdict: v, session: Some(s.clone()), minutes_over: Some(over(s)) };
        }
    }
    Finding { verdict: CheckVerdict::Unpaid, session: None, minutes_over: None }
}

/// Whether a verdict allows a fine (the check is then confirmed against the database).
pub fn may_fine(v: CheckVerdict) -> bool {
    !matches!(v, CheckVerdict::Valid | CheckVerdict::Grace)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn fact(point_id: i64, paid_until: DateTime<Utc>, active: bool, end: Option<EndReason>) -> SessionFact {
        SessionFact {
            session_id: 7,
            point_id,
            point_code: format!("HK{point_id:03}"),
            paid_until,
            expires_at: paid_until + Duration::minutes(10),
            active,
            end_reason: end,
        }
    }

    #[test]
    fn verdicts_follow_the_paid_time_and_the_grace() {
        let t = Utc::now();
        let s = fact(1, t, true, None);
        assert_eq!(verdict(1, Some(&s), None, t - Duration::minutes(1)).verdict, CheckVerdict::Valid);
        let g = verdict(1, Some(&s), None, t + Duration::minutes(5));
        assert_eq!((g.verdict, g.minutes_over), (CheckVerdict::Grace, Some(5)));
        let e = verdict(1, Some(&s), None, t + Duration::minutes(25));
        assert_eq!((e.verdict, e.minutes_over), (CheckVerdict::Expired, Some(25)));
        assert_eq!(verdict(2, Some(&s), None, t - Duration::minutes(1)).verdict, CheckVerdict::Elsewhere);
        assert_eq!(verdict(2, Some(&s), None, t + Duration::minutes(11)).verdict, CheckVerdict::Unpaid);
        assert_eq!(verdict(1, None, None, t).verdict, CheckVerdict::Unpaid);
    }

    #[test]
    fn ended_sessions_here() {
        let t = Utc::now();
        let expired = fact(1, t, false, Some(EndReason::Expired));
        let e = verdict(1, None, Some(&expired), t + Duration::minutes(40));
        assert_eq!((e.verdict, e.minutes_over), (CheckVerdict::Expired, Some(40)));
        // Long ago: no longer worth naming.
        assert_eq!(verdict(1, None, Some(&expired), t + Duration::hours(13)).verdict, CheckVerdict::Unpaid);
        // Stopped by the driver: the car should have left.
        let stopped = fact(1, t, false, Some(EndReason::Stopped));
        assert_eq!(verdict(1, None, Some(&stopped), t + Duration::minutes(40)).verdict, CheckVerdict::Unpaid);
        assert_eq!(verdict(1, None, Some(&stopped), t - Duration::minutes(40)).verdict, CheckVerdict::Unpaid);
        // An ended session at another point says nothing here.
        assert_eq!(verdict(2, None, Some(&expired), t + Duration::minutes(1)).verdict, CheckVerdict::Unpaid);
        // Within the grace of a session already closed (an offline check at device time).
        assert_eq!(verdict(1, None, Some(&expired), t + Duration::minutes(3)).verdict, CheckVerdict::Grace);
    }

    #[test]
    fn fines_only_outside_paid_and_grace() {
        assert!(!may_fine(CheckVerdict::Valid));
        assert!(!may_fine(CheckVerdict::Grace));
        assert!(may_fine(CheckVerdict::Expired));
        assert!(may_fine(CheckVerdict::Unpaid));
        assert!(may_fine(CheckVerdict::Elsewhere));
    }
}
