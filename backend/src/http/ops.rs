//! Operations: liveness, readiness, Prometheus metrics.

use std::sync::OnceLock;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use iparking_mobile_api::{HealthView, ReadyView};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{AppState, extract::Json};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = HealthView)))]
pub async fn healthz() -> Json<HealthView> {
    Json(HealthView { status: "ok".into() })
}

/// The database and the live state answer. 503 (same body) when either does not.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = ReadyView),
        (status = 503, description = "A dependency is down", body = ReadyView),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let (db, live) = tokio::join!(app.store.ping(), app.live.ping());
    let word = |ok: bool| if ok { "ok" } else { "unavailable" }.to_owned();
    let ready = db.is_ok() && live.is_ok();
    let view = ReadyView {
        database: word(db.is_ok()),
        live_state: word(live.is_ok()),
        database_backend: app.store.backend().into(),
        live_state_backend: app.live.backend().into(),
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // Not the error shape on purpose: probes and operators want each dependency's state.
    (status, [(header::CONTENT_TYPE, "application/json")], axum::Json(view))
}

/// The process-wide Prometheus recorder (one per process, shared by every app in it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            .expect("static buckets are valid");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program); then ours
        // still renders what is recorded through it... which is nothing, so say so once.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a global metrics recorder was already installed; /metrics will be empty");
        } else {
            spawn_upkeep(handle.clone());
        }
        handle
    })
}

/// How often the recorder's pending histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the thread that runs the recorder's upkeep.
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Folds the recorder's pending histogram samples into their buckets every
/// [`UPKEEP_INTERVAL`]. A recorder made by `build_recorder` keeps every sample recorded
/// until a render or an upkeep drains it, so without this a node that is never scraped grows
/// by about 8 bytes a request, without bound (`install_recorder` would spawn this itself, but
/// it also installs the recorder, which we do ourselves to tolerate an embedder's).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name(UPKEEP_THREAD.into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the metrics upkeep thread; histograms grow until scraped");
    }
}

/// Prometheus text exposition, on the metrics listener only ([`super::metrics_router`]).
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], prometheus().render())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process-wide recorder comes with its upkeep thread: without it, every request's
    /// latency sample stays in memory until a scrape.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_recorder_runs_its_upkeep() {
        let upkeep_threads = || {
            std::fs::read_dir("/proc/self/task")
                .expect("/proc/self/task")
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|n| n.trim() == UPKEEP_THREAD)
                .count()
        };
        // A spawned thread names itself once it runs, so give it a moment to show up.
        let settled = || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let n = upkeep_threads();
                if n > 0 || std::time::Instant::now() > deadline {
                    return n;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        let _ = prometheus();
        assert_eq!(settled(), 1);
        // A second call reuses the recorder and its thread.
        let _ = prometheus();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(settled(), 1);
    }
}
