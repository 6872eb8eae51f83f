//! The background jobs of a node, in one place: session expiry, expiry reminders, the
//! registry and tariff refresh, the live-state watchdog, and (one node at a time, under a
//! lease in the database) the ledger's sealer and day digests, the payments sweeper and the
//! settlement import. Each job calls
//! the same use-cases as the HTTP routes (`app`).

use std::sync::Arc;

use chrono::Duration;
use tokio::task::JoinHandle;

use crate::App;

/// The running jobs of a node.
pub struct Jobs {
    handles: Vec<JoinHandle<()>>,
}

impl Jobs {
    /// Starts every job of a serving node.
    pub fn spawn(app: &Arc<App>) -> Jobs {
        let mut handles = vec![
            tokio::spawn(refresh_index_forever(app.clone())),
            tokio::spawn(expire_sessions_forever(app.clone())),
            tokio::spawn(send_reminders_forever(app.clone())),
            tokio::spawn(crate::live::watch_forever(
                app.store.clone(),
                app.live.clone(),
                app.settings.live_check_interval,
                app.node_id.clone(),
            )),
        ];
        // The ledger's sealer and its day digests: one node at a time (a lease each).
        if !app.settings.ledger_seal_interval.is_zero() {
            handles.push(tokio::spawn(leased_forever(
                app.clone(),
                "ledger_sealer",
                app.settings.ledger_seal_interval,
                |app| async move {
                    if let Err(e) = crate::app::ledger_chain::seal(&app).await {
                        tracing::warn!(error = %e, "ledger sealing failed; it resumes at the next tick");
                    }
                },
            )));
            handles.push(tokio::spawn(leased_forever(
                app.clone(),
                "ledger_digests",
                std::time::Duration::from_secs(60),
                |app| async move {
                    if let Err(e) = crate::app::ledger_chain::make_digests(&app).await {
                        tracing::warn!(error = %e, "ledger digests failed; they resume at the next tick");
                    }
                },
            )));
        }
        // Payments jobs run on one node at a time (a lease in the database).
        if app.payments.as_ref().is_some_and(|g| !g.is_sandbox()) {
            handles.push(tokio::spawn(leased_forever(
                app.clone(),
                "payments_sweeper",
                app.settings.sweep_interval,
                |app| async move {
                    if let Err(e) = crate::app::charges::sweep(&app).await {
                        tracing::warn!(error = %e, "payments sweep failed; it runs again at the next tick");
                    }
                },
            )));
            handles.push(tokio::spawn(leased_forever(
                app.clone(),
                "settlement_import",
                app.settings.settlement_interval,
                |app| async move {
                    if let Err(e) = crate::app::charges::import_settlement(&app).await {
                        tracing::warn!(error = %e, "settlement import failed; it resumes at the next tick");
                    }
                },
            )));
        }
        Jobs { handles }
    }

    /// Stops every job (the node is shutting down).
    pub fn stop(self) {
        for h in self.handles {
            h.abort();
        }
    }
}

/// Reminds each driver once, `reminder_before` the end of the paid time, with how to extend
/// (Web Push, the push webhook or SMS: `app::reminders::remind`).
/// Restart-safe and exactly-once across nodes: a session is claimed (marked reminded) in the
/// database before its message is sent.
pub async fn send_reminders_forever(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.settings.expiry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let before = Duration::from_std(app.settings.reminder_before).unwrap_or(Duration::minutes(10));
    loop {
        tick.tick().await;
        let due = match app.store.claim_reminders(app.clock.now(), before, 200).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reminder claim failed");
                continue;
            }
        };
        for (s, phone) in due {
            let Some(phone) = phone.and_then(|p| crate::domain::phone::Phone::parse(&p).ok()) else { continue };
            let until = crate::domain::tariff::local_time_for_people(s.paid_until, app.clock.now());
            match crate::app::reminders::remind(&app, &s, &phone, &until).await {
                Ok(how) => tracing::info!(session.id = s.id, by = ?how, "expiry reminder sent"),
                Err(e) => tracing::warn!(session.id = s.id, error = %e, "expiry reminder not sent"),
            }
        }
    }
}

/// Closes expired sessions and frees their spaces in the live state. Safe on many nodes at
/// once: each session is closed by one `UPDATE … WHERE status = 'active'`.
pub async fn expire_sessions_forever(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.settings.expiry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match app.store.expire_sessions(app.clock.now()).await {
            Ok(ended) => {
                let closed: Vec<_> = ended.iter().collect();
                crate::live::mirror(app.live.as_ref(), &[], &[], &closed).await;
                if !ended.is_empty() {
                    tracing::info!(sessions = ended.len(), "expired sessions closed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "session expiry failed"),
        }
    }
}

pub async fn refresh_index_forever(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.settings.index_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.refresh_index().await {
            tracing::warn!(error = %e, "point index refresh failed");
        }
        if let Err(e) = app.refresh_tariffs().await {
            tracing::warn!(error = %e, "tariff reload failed");
        }
    }
}

/// Runs `job` every `every` (first one interval after the start) on whichever node holds
/// the lease `name`.
pub async fn leased_forever<F, Fut>(app: Arc<App>, name: &'static str, every: std::time::Duration, job: F)
where
    F: Fn(Arc<App>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = Duration::from_std(every * 3).unwrap_or(Duration::minutes(5));
    // The first run is one interval after the start, not at once: a restarting fleet does
    // not sweep in a burst, and nothing is lost (the work waits in the database).
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = app.clock.now();
        match app.store.try_lease(name, &app.node_id, now + ttl, now).await {
            Ok(true) => job(app.clone()).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "job lease not taken"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::app::reminders::reminder_text;

    #[test]
    fn reminders_say_how_to_extend_by_the_channel_bought_on() {
        assert_eq!(
            reminder_text("30A12345", "HK001", "10:30", true),
            "iParking: xe 30A12345 tai HK001 het gio luc 10:30; nhan IP<gia>HK 001 30A12345 de gia han."
        );
        assert_eq!(
            reminder_text("30A12345", "HK001", "10:30 06/12", false),
            "iParking: xe 30A12345 tai HK001 het gio luc 10:30 06/12; mo ung dung iParking de gia han."
        );
    }
}
