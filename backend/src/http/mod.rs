//! HTTP: one router module per audience, assembled here with the middleware stack.

use std::{future::Future, sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::Response,
};
use iparking_mobile_api::{ErrorBody, ErrorDetail};
use tokio::net::TcpListener;
use tower_http::{
    LatencyUnit,
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::{
    App,
    error::{ErrorPayload, error_for_status},
};

pub mod admin;
pub mod apps;
pub mod cards;
pub mod cds;
mod conns;
pub mod csv;
pub mod drivers;
pub mod extract;
pub mod finance;
pub mod finance_web;
pub mod idempotency;
pub mod input;
pub mod openapi;
pub mod ops;
pub mod payments;
pub mod points;
pub mod sessions;
pub mod slip_page;
pub mod tariffs;
pub mod wardens;
pub mod webhooks;

pub use conns::Peer;

/// The state every handler receives.
pub type AppState = Arc<App>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "iParking API",
        description = "Pay-by-phone street parking. Errors always have the shape \
            {\"error\":{\"code\":\"…\",\"message\":\"…\"}}; messages are Vietnamese by default, \
            English with Accept-Language: en.",
    ),
    modifiers(&BearerAuth),
    // Referenced only from a query's parameters, which utoipa does not collect.
    components(schemas(iparking_mobile_api::ImportFormat)),
    tags(
        (name = "points", description = "Parking points for drivers"),
        (name = "tariffs", description = "Prices and quotes"),
        (name = "drivers", description = "Driver login, vehicles, wallet"),
        (name = "sessions", description = "Parking sessions"),
        (name = "webhooks", description = "Carrier SMS deliveries"),
        (name = "wardens", description = "Wardens' handhelds: checks, cash, violations, sync, shifts"),
        (name = "finance", description = "Revenue, reconciliation, discrepancies, period close, refunds (role finance)"),
        (name = "admin", description = "City administration (role admin)"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and their OpenAPI document.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(points::nearby_points))
        .routes(routes!(points::search_points))
        .routes(routes!(points::get_point))
        .routes(routes!(points::list_districts))
        .routes(routes!(drivers::send_otp))
        .routes(routes!(drivers::create_token))
        .routes(routes!(drivers::logout))
        .routes(routes!(drivers::logout_all))
        .routes(routes!(drivers::push_key))
        .routes(routes!(drivers::subscribe_push, drivers::list_push_subscriptions))
        .routes(routes!(drivers::unsubscribe_push))
        .routes(routes!(drivers::list_vehicles, drivers::add_vehicle))
        .routes(routes!(drivers::remove_vehicle))
        .routes(routes!(drivers::get_wallet))
        .routes(routes!(drivers::sandbox_topup))
        .routes(routes!(sessions::start_session, sessions::list_sessions))
        .routes(routes!(sessions::get_session, sessions::correct_plate))
        .routes(routes!(sessions::extend_session))
        .routes(routes!(sessions::stop_session))
        .routes(routes!(sessions::extension_quote))
        .routes(routes!(sessions::stop_quote))
        .routes(routes!(sessions::session_receipt))
        .routes(routes!(webhooks::sms_delivery))
        .routes(routes!(payments::create_topup))
        .routes(routes!(payments::stripe_event))
        .routes(routes!(cards::create_setup))
        .routes(routes!(cards::list_cards))
        .routes(routes!(cards::remove_card))
        .routes(routes!(cards::charges::get_charge))
        .routes(routes!(cards::refunds::list_refunds))
        .routes(routes!(cards::refunds::close_account))
        .routes(routes!(cards::refunds::staff_refund))
        .routes(routes!(cards::jobs::run_sweep))
        .routes(routes!(cards::jobs::run_import))
        .routes(routes!(wardens::auth::warden_login))
        .routes(routes!(wardens::auth::warden_logout))
        .routes(routes!(wardens::checks::check_plate))
        .routes(routes!(wardens::checks::point_roster))
        .routes(routes!(wardens::cash::start_cash_session))
        .routes(routes!(wardens::cash::extend_cash_session))
        .routes(routes!(wardens::cash::get_receipt))
        .routes(routes!(wardens::cash::get_float))
        .routes(routes!(wardens::cash::warden_extension_quote))
        .routes(routes!(wardens::violations::create_violation))
        .routes(routes!(wardens::violations::get_violation))
        .routes(routes!(wardens::violations::get_photo))
        .routes(routes!(wardens::violations::list_citations))
        .routes(routes!(wardens::violations::get_citation))
        .routes(routes!(wardens::violations::get_citation_photo))
        .routes(routes!(wardens::sync::sync_actions))
        .routes(routes!(wardens::shifts::open_shift))
        .routes(routes!(wardens::shifts::current_shift))
        .routes(routes!(wardens::shifts::get_shift))
        .routes(routes!(wardens::shifts::shift_history))
        .routes(routes!(wardens::shifts::close_shift))
        .routes(routes!(tariffs::create_quote))
        .routes(routes!(tariffs::point_tariff))
        .routes(routes!(tariffs::publish_tariff, tariffs::list_tariffs))
        .routes(routes!(tariffs::retire_tariff))
        .routes(routes!(finance::revenue::get_revenue))
        .routes(routes!(finance::reconciliation::get_reconciliation))
        .routes(routes!(finance::reconciliation::list_discrepancies))
        .routes(routes!(finance::reconciliation::post_resolve))
        .routes(routes!(finance::periods::get_period))
        .routes(routes!(finance::periods::post_close))
        .routes(routes!(finance::adjustments::post_adjustment, finance::adjustments::list_adjustments))
        .routes(routes!(finance::settlements::post_settlement))
        .routes(routes!(finance::refunds::list_refund_requests))
        .routes(routes!(finance::refunds::approve_refund_request))
        .routes(routes!(finance::refunds::reject_refund_request))
        .routes(routes!(finance::periods::list_audit))
        .routes(routes!(finance::refunds::create_refund_request, finance::refunds::my_refund_requests))
        .routes(routes!(admin::create_district))
        .routes(routes!(admin::create_street, admin::list_streets))
        .routes(routes!(admin::create_point))
        .routes(routes!(admin::update_point))
        .routes(routes!(admin::close_point))
        .routes(routes!(admin::open_point))
        .routes(routes!(admin::import_points))
        .routes(routes!(admin::create_staff))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .split_for_parts()
}

/// The OpenAPI document, as served at `/openapi.json`: what the handlers declare, made exact
/// by [`openapi::complete`] (the refusals they share, the formats their parsers enforce).
pub fn openapi() -> serde_json::Value {
    let mut doc = openapi::complete(&api().1);
    openapi::with_settings(&mut doc, &crate::Settings::default());
    doc
}

/// The whole HTTP service for `app`.
pub fn router(app: AppState) -> Router {
    let (routes, openapi) = api();
    let settings = app.settings.clone();
    let mut openapi = openapi::complete(&openapi);
    openapi::with_settings(&mut openapi, &settings);
    routes
        // No spec validator: Swagger UI would otherwise ask validator.swagger.io about the
        // document from every reader's browser ("none" is Swagger UI's off switch).
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", openapi)
                .config(SwaggerConfig::default().validator_url("none")),
        )
        .merge(finance_web::router())
        .merge(cds::router())
        .merge(apps::router(std::sync::Arc::new(apps::Apps::new(&apps::Config::of(&app)))))
        // Inside routing, so the matched route template is known.
        .route_layer(middleware::from_fn(record_metrics))
        .fallback(|| async { error_for_status(StatusCode::NOT_FOUND) })
        .with_state(app)
        // Layers run bottom-up on the way in: the last added is the outermost.
        .layer(DefaultBodyLimit::max(settings.json_body_limit))
        .layer(middleware::from_fn_with_state(settings.request_timeout, time_out))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // Never the URI: paths and queries may carry personal data. The route
                    // template is recorded once routing has matched (`record_metrics`).
                    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!(
                        "http",
                        method = %req.method(),
                        route = tracing::field::Empty,
                        request.id = request_id,
                        staff.id = tracing::field::Empty
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Micros)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn_with_state(
            Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight.max(1))),
            shed_load,
        ))
        .layer(middleware::from_fn(input::refuse_control_characters))
        .layer(middleware::from_fn(shape_errors))
}

/// A random (version 4) UUID for each request without one, from the thread's random
/// generator: `tower_http`'s `MakeRequestUuid` asks the kernel for every one (a system call
/// per request).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid_v4(rand::random());
        axum::http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Formats 128 random bits as a version 4 UUID (RFC 9562: version 4, variant 10).
fn uuid_v4(bits: u128) -> String {
    let b = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{b:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Bounds the requests a node works on at once (`Settings::max_in_flight`): one more is
/// answered 503 `overloaded` with `Retry-After: 1` at once, so an overloaded node keeps its
/// memory and its latency for the requests it took, and the client (or the load balancer)
/// retries, elsewhere or later. The probes are never refused.
async fn shed_load(
    axum::extract::State(limit): axum::extract::State<Arc<tokio::sync::Semaphore>>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    let Ok(_permit) = limit.try_acquire_owned() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        let mut resp = axum::response::IntoResponse::into_response(crate::error::AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Máy chủ đang quá tải. Vui lòng thử lại sau giây lát.",
            "The server is overloaded. Please retry in a moment.",
        ));
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}

/// Answers a request that runs past `Settings::request_timeout` with 503 `timeout`
/// (`Retry-After: 1`). What becomes of its work depends on the kind of request
/// (docs/operations.md, "Timeouts"):
/// - a read (`GET`, `HEAD`) is cancelled: its future is dropped;
/// - a write is finished: it goes on in a task of its own, so that it never stops between
///   two of its steps (an effect committed and its answer, or the registry and the index),
///   and a call with an `Idempotency-Key` (every money movement) stores its answer for a
///   retry with the same key to read.
async fn time_out(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    let read = matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let keyed = req.headers().contains_key("idempotency-key");
    let work = next.run(req);
    if read {
        return match tokio::time::timeout(limit, work).await {
            Ok(resp) => resp,
            Err(_) => timeout_answer(Finishing::No),
        };
    }
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => axum::response::IntoResponse::into_response(crate::error::AppError::internal(&e)),
        Err(_) => timeout_answer(if keyed { Finishing::Keyed } else { Finishing::Unkeyed }),
    }
}

#[derive(Clone, Copy)]
enum Finishing {
    /// Cancelled.
    No,
    /// Finished; a retry with the same key reads the answer.
    Keyed,
    /// Finished; the outcome is read from the resources it changed.
    Unkeyed,
}

fn timeout_answer(finishing: Finishing) -> Response {
    let (vi, en, label) = match finishing {
        Finishing::No => (
            "Yêu cầu xử lý quá lâu và đã bị hủy. Vui lòng thử lại.",
            "The request took too long and was cancelled. Please retry.",
            "cancelled",
        ),
        Finishing::Keyed => (
            "Yêu cầu xử lý quá lâu; máy chủ vẫn hoàn tất nó. Gửi lại với cùng Idempotency-Key để nhận kết quả.",
            "The request took too long; the server still completes it. Retry with the same Idempotency-Key for the outcome.",
            "finished",
        ),
        Finishing::Unkeyed => (
            "Yêu cầu xử lý quá lâu; máy chủ vẫn hoàn tất nó. Hãy xem kết quả trước khi gửi lại.",
            "The request took too long; the server still completes it. Check the outcome before you retry.",
            "finished",
        ),
    };
    metrics::counter!("http_requests_timed_out_total", "work" => label).increment(1);
    let error = crate::error::AppError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", vi, en);
    let mut resp = axum::response::IntoResponse::into_response(error);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Whether the caller prefers English over Vietnamese (`Accept-Language`, q-values honoured).
pub fn prefers_english(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for part in value.split(',') {
        let mut it = part.trim().split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
        let english = if tag == "en" || tag.starts_with("en-") {
            true
        } else if tag == "vi" || tag.starts_with("vi-") {
            false
        } else {
            continue;
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, english));
        }
    }
    best.is_some_and(|(_, english)| english)
}

/// Renders every error answer in the one JSON shape, in the caller's language: the
/// handlers' [`AppError`](crate::error::AppError)s and the bare statuses of middleware
/// (timeout, panic, unknown route, method not allowed).
async fn shape_errors(req: Request, next: Next) -> Response {
    let english = prefers_english(req.headers());
    let mut resp = next.run(req).await;
    // HTML pages (the finance dashboard) render their own error pages.
    if resp.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"text/html")) {
        return resp;
    }
    let status = resp.status();
    let error = match resp.extensions_mut().remove::<ErrorPayload>() {
        Some(ErrorPayload(e)) => e,
        None if (status.is_client_error() || status.is_server_error())
            && resp.headers().get(header::CONTENT_TYPE).is_none_or(|ct| ct.as_bytes() != b"application/json") =>
        {
            error_for_status(status)
        }
        None => return resp,
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: error.code.to_owned(),
            message: error.message(english).to_owned(),
            details: error.details.clone(),
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let (mut parts, _) = resp.into_parts();
    parts.status = error.status;
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(if english { "en" } else { "vi" }));
    Response::from_parts(parts, Body::from(bytes))
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    tracing::Span::current().record("route", route.as_str());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(started.elapsed().as_secs_f64());
    resp
}

/// The metrics listener's service: `GET /metrics` (Prometheus text), nothing else. It runs
/// on its own address (`--metrics-listen`), never on the API's (docs/operations.md).
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(ops::metrics))
        .fallback(|| async { error_for_status(StatusCode::NOT_FOUND) })
}

/// Serves [`metrics_router`] on `listener` until the process ends.
pub async fn serve_metrics(listener: TcpListener) -> std::io::Result<()> {
    ops::prometheus();
    axum::serve(listener, metrics_router()).await
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests.
/// Also runs the point index refresher for as long as it serves.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    ops::prometheus();
    let jobs = crate::jobs::Jobs::spawn(&app);
    let app_checks = app.checks.clone();
    let max_connections = app.settings.max_connections;
    let result = conns::serve(listener, router(app), max_connections, shutdown).await;
    jobs.stop();
    // Every plate check answered is written before the process goes.
    app_checks.flush().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(v).unwrap());
        prefers_english(&h)
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        for bits in [0, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let id = uuid_v4(bits);
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{id}");
            assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
            assert!(groups[2].starts_with('4'), "version 4: {id}");
            assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "variant 10: {id}");
        }
        assert_eq!(uuid_v4(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(uuid_v4(u128::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let mut make = RandomRequestId;
        let req = axum::http::Request::new(());
        let (a, b) = (make.make_request_id(&req).unwrap(), make.make_request_id(&req).unwrap());
        assert_ne!(a.header_value(), b.header_value(), "random");
    }

    #[test]
    fn language_negotiation() {
        assert!(!prefers_english(&HeaderMap::new()));
        assert!(langs("en"));
        assert!(langs("en-US,en;q=0.9"));
        assert!(!langs("vi-VN,vi;q=0.9,en;q=0.8"));
        assert!(langs("vi;q=0.3, en;q=0.7"));
        assert!(!langs("fr-FR"));
        assert!(langs("fr, en;q=0.5"));
    }
}
