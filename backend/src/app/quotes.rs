//! A priced stay, line by line: answered by `POST /v1/quotes`, and stored with each purchase
//! as its receipt (so a receipt shows the lines it was sold with, whatever the tariff
//! becomes).

use iparking_mobile_api::{QuoteLine, QuoteLineKind, QuoteView, VehicleClass};

use crate::domain::tariff::{Line, Priced, Tariff};

/// Renders a priced stay.
pub fn quote_view(
    t: &Tariff,
    point_code: &str,
    class: VehicleClass,
    channel: iparking_mobile_api::Channel,
    p: &Priced,
    english: bool,
) -> QuoteView {
    let lines = p
        .lines
        .iter()
        .map(|l| {
            let mut q = QuoteLine {
                kind: QuoteLineKind::Turn,
                amount: l.amount().get(),
                description: t.describe(l, english),
                turn: None,
                hour_of_stay: None,
                window: None,
                from: None,
                to: None,
                date: None,
            };
            match l {
                Line::Turn { n, from, to, window, hour_of_stay, .. } => {
                    q.turn = Some(*n);
                    q.hour_of_stay = Some(*hour_of_stay);
                    q.window = Some(t.windows[*window].label.clone());
                    q.from = Some(*from);
                    q.to = Some(*to);
                }
                Line::BlockDiscount { window, .. } => {
                    q.kind = QuoteLineKind::BlockDiscount;
                    q.window = Some(t.windows[*window].label.clone());
                }
                Line::DailyCapDiscount { date, .. } => {
                    q.kind = QuoteLineKind::DailyCapDiscount;
                    q.date = Some(*date);
                }
                Line::MinimumCharge { .. } => q.kind = QuoteLineKind::MinimumCharge,
                Line::SmsSurcharge { .. } => q.kind = QuoteLineKind::SmsSurcharge,
            }
            q
        })
        .collect();
    QuoteView {
        tariff_id: t.id,
        tariff_name: t.name.clone(),
        point_code: point_code.to_owned(),
        vehicle_class: class,
        channel,
        start: p.from,
        end: p.until,
        turns: p.turns,
        turn_minutes: t.turn_minutes,
        total: p.total.get(),
        currency: "VND".into(),
        lines,
    }
}
