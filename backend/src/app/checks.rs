//! Plate checks: a warden's handheld asks whether a plate at a point is paid. The live
//! state answers; a verdict that may lead to a fine is confirmed against the database, and
//! every check is recorded (`check_log`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use iparking_mobile_api::{CheckVerdict, ElsewherePoint, NearMiss, PlateCheckView};

use crate::{
    App,
    domain::{
        check::{CheckSource, Finding, SessionFact, may_fine, time_verdict, verdict},
        plate::Plate,
    },
    error::AppError,
    live::PlateEntry,
    store::{PointRecord, wardens::CheckRecord},
};

fn entry_fact(e: &PlateEntry) -> SessionFact {
    SessionFact {
        session_id: e.session_id,
        point_id: e.point_id,
        point_code: e.point_code.clone(),
        paid_until: DateTime::from_timestamp_micros(e.paid_until_us).unwrap_or_default(),
        expires_at: DateTime::from_timestamp_micros(e.expires_at_us).unwrap_or_default(),
        active: true,
        end_reason: None,
    }
}

/// The plates among `vehicles` (plate, session id, paid until and expiry in Unix
/// microseconds) that are near misses of `plate`. Only those are copied: this runs over
/// every vehicle at the point on every check.
fn near_misses_in<'a>(
    plate: &Plate,
    vehicles: impl Iterator<Item = (&'a str, i64, i64, i64)>,
    at: DateTime<Utc>,
) -> Vec<NearMiss> {
    let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    vehicles
        .filter(|(p, ..)| plate.near_miss_str(p))
        .map(|(p, session_id, paid_until, expires_at)| NearMiss {
            plate: p.to_owned(),
            session_id,
            paid_until: time(paid_until),
            verdict: time_verdict(time(paid_until), time(expires_at), at),
        })
        .collect()
}

/// Checks a plate at a point at `at` (now online, the device time offline), records the
/// check, and answers. Online, the live state answers; a verdict that may lead to a fine is
/// confirmed against the database (and a live state that missed the session is repaired).
pub async fn run_check(
    app: &App,
    staff_id: i64,
    plate: &Plate,
    point: &PointRecord,
    at: DateTime<Utc>,
    source: CheckSource,
) -> Result<PlateCheckView, AppError> {
    let now = app.clock.now();
    let mut finding: Option<Finding> = None;
    // The near misses among the vehicles at the point; `None` until a roster was seen.
    let mut near_misses: Option<Vec<NearMiss>> = None;
    if source == CheckSource::Online {
        match app.live.plate_lookup(plate.as_str(), point.id).await {
            Ok(lk) => {
                let f = verdict(point.id, lk.entry.as_ref().map(entry_fact).as_ref(), None, at);
                if !lk.roster.is_empty() {
                    near_misses = Some(near_misses_in(
                        plate,
                        lk.roster.iter().map(|(p, e)| (p.as_str(), e.session_id, e.paid_until_us, e.expires_at_us)),
                        at,
                    ));
                }
                if !may_fine(f.verdict) {
                    finding = Some(f);
                }
            }
            Err(e) => {
                crate::warn_throttled!(error = %e, "live state unavailable: plate check answered from the database")
            }
        }
    }
    let finding = match finding {
        Some(f) => f,
        None => {
            let facts = app.facts.plate_facts(plate, point.id, at).await?;
            let f = verdict(point.id, facts.covering.as_ref(), facts.last_here.as_ref(), at);
            if source == CheckSource::Online
                && let Some(s) = facts.covering.as_ref().filter(|s| s.active && !may_fine(f.verdict))
            {
                // The live state missed a session the database has: repair it now.
                let entry = PlateEntry {
                    session_id: s.session_id,
                    point_id: s.point_id,
                    point_code: s.point_code.clone(),
                    paid_until_us: s.paid_until.timestamp_micros(),
                    expires_at_us: s.expires_at.timestamp_micros(),
                };
                if app.live.set_active_plate(plate.as_str(), &entry).await.is_ok() {
                    tracing::warn!(session.id = s.session_id, "live plate index missed a session; repaired");
                }
            }
            if near_misses.is_none() {
                let here = app.store.point_sessions(point.id).await?;
                near_misses = Some(near_misses_in(
                    plate,
                    here.iter().filter(|s| s.started_at <= at).map(|s| {
                        (s.plate.as_str(), s.id, s.paid_until.timestamp_micros(), s.expires_at.timestamp_micros())
                    }),
                    at,
                ));
            }
            f
        }
    };
    let near_misses = near_misses.unwrap_or_default();
    let elsewhere = match (&finding.verdict, &finding.session) {
        (CheckVerdict::Elsewhere, Some(s)) => {
            let other = match app.index().point_by_id(s.point_id) {
                Some(p) => Some(p),
                None => app.store.point(&s.point_code).await?.map(Arc::new),
            };
            other.map(|p| ElsewherePoint { code: p.code.clone(), name: p.name.clone(), street: p.street_name.clone() })
        }
        _ => None,
    };
    let session = finding.session.as_ref();
    let view = PlateCheckView {
        plate: plate.as_str().to_owned(),
        point_code: point.code.clone(),
        verdict: finding.verdict,
        session_id: session.map(|s| s.session_id),
        paid_until: session.map(|s| s.paid_until),
        grace_until: session
            .filter(|_| matches!(finding.verdict, CheckVerdict::Valid | CheckVerdict::Grace))
            .map(|s| s.expires_at),
        minutes_over: finding.minutes_over,
        elsewhere,
        near_misses,
        checked_at: if source == CheckSource::Online { now } else { at },
    };
    app.checks
        .record(CheckRecord {
            staff_id,
            point_id: point.id,
            plate: plate.clone(),
            verdict: view.verdict,
            session_id: view.session_id,
            near_misses: view.near_misses.len() as u32,
            source,
            checked_at: view.checked_at,
        })
        .await;
    metrics::counter!("plate_checks_total", "verdict" => crate::store::wardens::verdict_name(view.verdict))
        .increment(1);
    Ok(view)
}
