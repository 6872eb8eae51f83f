//! The API's views of stored rows that several use-cases answer with: a point, a session, a refund
//! (a priced stay is [`crate::app::quotes::quote_view`]: it is also stored with each
//! purchase). Pure conversions: no lookup, no rule.

use chrono::{DateTime, Utc};
use iparking_mobile_api::{PointView, RefundView, SessionStatus, SessionView, StreetView};

use crate::store::{PointRecord, cards::RefundRow, drivers::SessionRow};

/// The API view of a session; the status is computed at `now` (an expired session the
/// expiry job has not closed yet already shows as ended).
pub fn session_view(s: &SessionRow, now: DateTime<Utc>) -> SessionView {
    let active = s.active && s.expires_at > now;
    SessionView {
        id: s.id,
        status: if active { SessionStatus::Active } else { SessionStatus::Ended },
        point_code: s.point_code.clone(),
        plate: s.plate.as_str().to_owned(),
        vehicle_class: s.vehicle_class,
        tariff_id: s.tariff_id,
        channel: s.channel.as_str().to_owned(),
        started_at: s.started_at,
        paid_until: s.paid_until,
        expires_at: s.expires_at,
        turns: s.turns,
        amount_charged: s.amount_charged.get(),
        amount_refunded: s.amount_refunded.get(),
        ended_at: s.ended_at.or((!active).then_some(s.paid_until)),
        end_reason: s.end_reason.map(|r| r.as_str().to_owned()).or_else(|| (!active).then(|| "expired".to_owned())),
        warnings: Vec::new(),
        purchases: Vec::new(),
    }
}

/// The API view of a refund.
pub fn refund_view(r: &RefundRow) -> RefundView {
    RefundView {
        id: r.id,
        amount: r.amount.get(),
        status: r.status.as_str().to_owned(),
        reason: r.reason.clone(),
        session_id: r.session_id,
        created_at: r.created_at,
    }
}

/// The API view of a point; `occupied` comes from the live state (`None` if unreachable).
pub fn point_view(p: &PointRecord, occupied: Option<i64>) -> PointView {
    PointView {
        code: p.code.clone(),
        name: p.name.clone(),
        street: StreetView { id: p.street_id, name: p.street_name.clone(), district_code: p.district_code.clone() },
        district_name: p.district_name.clone(),
        lat: p.lat,
        lon: p.lon,
        curb: p.curb.clone(),
        capacity: p.capacity,
        free_spaces: occupied.map(|o| free_spaces(p.capacity, o)),
        vehicle_classes: p.vehicle_classes.clone(),
        status: p.status,
        updated_at: p.updated_at,
    }
}

/// Free spaces of a point: its capacity less what is occupied, never below zero.
pub fn free_spaces(capacity: i32, occupied: i64) -> i32 {
    (i64::from(capacity) - occupied).clamp(0, i64::from(capacity)) as i32
}
