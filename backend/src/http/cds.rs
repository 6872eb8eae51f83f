//! The Curb Data Specification 1.1 feeds at `/cds/…` (issue 34; `app::cds` builds the
//! answers). Outside the OpenAPI router like `/public`: their contract is the CDS's own
//! OpenAPI documents (vendored under tests/standards/cds/, validated by tests/tests/cds.rs).
//! JSON as `application/vnd.cds+json;version=1.1`; the Metrics also as CSV
//! (`application/vnd.cds+csv;version=1.1`) when the `Accept` header asks for it; another
//! CDS version or a type we do not serve is 406.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::Value;

use super::{
    AppState,
    extract::{MaybeStaff, Path, Query},
};
use crate::{
    app::cds::{self, EventsQuery, MetricsQuery, Page, PoliciesQuery, Table, ZonesQuery},
    domain::cds::{CSV_MEDIA_TYPE, JSON_MEDIA_TYPE},
    error::AppError,
};

/// The feeds' routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cds/curbs/zones", get(zones))
        .route("/cds/curbs/zones/{id}", get(zone))
        .route("/cds/curbs/areas", get(areas))
        .route("/cds/curbs/policies", get(policies))
        .route("/cds/curbs/areas/{id}", get(area))
        .route("/cds/curbs/policies/{id}", get(policy))
        .route("/cds/curbs/spaces", get(not_implemented))
        .route("/cds/curbs/spaces/{id}", get(not_implemented))
        .route("/cds/curbs/objects", get(not_implemented))
        .route("/cds/curbs/objects/{id}", get(not_implemented))
        .route("/cds/events/events", get(events))
        .route("/cds/events/status", get(not_implemented))
        .route("/cds/metrics/sessions", get(metric_sessions))
        .route("/cds/metrics/aggregates", get(aggregates))
}

/// What the client takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// Picks the answer's format from `Accept` (its first acceptable range, `q=0` skipped): CDS
/// JSON of version 1.1 (or no version), `application/json` or a wildcard give JSON; CDS CSV
/// or `text/csv` give CSV where `csv` is served. Nothing acceptable: 406.
fn negotiate(headers: &HeaderMap, csv: bool) -> Result<Format, AppError> {
    let Some(accept) = headers.get(header::ACCEPT) else { return Ok(Format::Json) };
    let accept = accept.to_str().unwrap_or_default();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut version_ok = true;
        let mut refused = false;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "version" => version_ok = matches!(v.trim().trim_matches('"'), "1.1" | "1.1.0"),
                "q" => refused = v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0),
                _ => {}
            }
        }
        if refused {
            continue;
        }
        match media.as_str() {
            "application/vnd.cds+json" if version_ok => return Ok(Format::Json),
            "application/vnd.cds+csv" if version_ok && csv => return Ok(Format::Csv),
            "text/csv" if csv => return Ok(Format::Csv),
            "application/json" | "application/*" | "*/*" => return Ok(Format::Json),
            "" if accept.trim().is_empty() => return Ok(Format::Json),
            _ => {}
        }
    }
    Err(AppError::new(
        StatusCode::NOT_ACCEPTABLE,
        "not_acceptable",
        format!(
            "Chỉ phục vụ {JSON_MEDIA_TYPE}{}.",
            if csv { format!(" hoặc {CSV_MEDIA_TYPE}") } else { String::new() }
        ),
        format!(
            "Only {JSON_MEDIA_TYPE}{} is served.",
            if csv { format!(" or {CSV_MEDIA_TYPE}") } else { String::new() }
        ),
    ))
}

/// A JSON answer with CDS's media type; `public`: cacheable by anyone, from any origin.
fn json_answer(body: &Value, public: bool) -> Response {
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_MEDIA_TYPE));
    cache_headers(h, public);
    r
}

fn cache_headers(h: &mut HeaderMap, public: bool) {
    if public {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// This request's URL with `cursor` set (a relative reference, as JSON:API allows).
fn page_url(uri: &Uri, cursor: &str) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        s.append_pair(k, v);
    }
    s.append_pair("cursor", cursor);
    format!("{}?{}", uri.path(), s.finish())
}

/// The page's JSON with its `links` (`first`, and `next`: null on the last page).
fn with_links(page: Page, uri: &Uri) -> Value {
    let mut body = page.body;
    if let Value::Object(m) = &mut body {
        m.insert(
            "links".into(),
            serde_json::json!({
                "first": page_url(uri, &page.first),
                "next": page.next.as_deref().map(|c| page_url(uri, c)),
            }),
        );
    }
    body
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| cell(Some(x))).collect::<Vec<_>>().join(";"),
        Some(other) => other.to_string(),
    }
}

/// A metrics table as CDS CSV: a header of `columns`, one line per row object (arrays as
/// `;`-separated lists, absent values empty); the next page, if any, in a `Link` header.
fn csv_answer(table: &Table, key: &str, uri: &Uri, public: bool) -> Result<Response, AppError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let write =
        |w: &mut csv::Writer<Vec<u8>>, rec: Vec<String>| w.write_record(rec).map_err(|e| AppError::internal(&e));
    write(&mut w, table.columns.iter().map(|c| (*c).to_owned()).collect())?;
    let rows = table.page.body.pointer(&format!("/data/{key}")).and_then(Value::as_array).cloned().unwrap_or_default();
    for row in &rows {
        write(&mut w, table.columns.iter().map(|c| cell(row.get(*c))).collect())?;
    }
    let bytes = w.into_inner().map_err(|e| AppError::internal(&e))?;
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CSV_MEDIA_TYPE));
    if let Some(next) = &table.page.next
        && let Ok(v) = HeaderValue::from_str(&format!("<{}>; rel=\"next\"", page_url(uri, next)))
    {
        h.insert(header::LINK, v);
    }
    cache_headers(h, public);
    Ok(r)
}

async fn zones(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ZonesQuery>,
) -> Result<Response, AppError> {
    negotiate(&headers, false)?;
    Ok(json_answer(&cds::zones(&app, &q).await?, true))
}

async fn zone(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ZonesQuery>,
) -> Result<Response, AppError> {
    negotiate(&headers, false)?;
    Ok(json_answer(&cds::zone(&app, &id, &q).await?, true))
}

async fn areas(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ZonesQuery>,
) -> Result<Response, AppError> {
    negotiate(&headers, false)?;
    Ok(json_answer(&cds::areas(&app, &q).await?, true))
}

async fn area(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, AppError> {
    negotiate(&headers, false)?;
    Ok(json_answer(&cds::area(&app, &id).await?, true))
}

async fn policy(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, AppError> {
    negotiate(&headers, false)?;
    Ok(json_answer(&cds::policy(&app, &id).await?, true))
}

async fn policies(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PoliciesQuery>,
) -> Result<Response, AppError> {
    negotiate(&headers, false)?;
    Ok(json_answer(&cds::policies(&app, &q).await?, true))
}

async fn events(
    State(app): State<AppState>,
    MaybeStaff(caller): MaybeStaff,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<EventsQuery>,
) -> Result<Response, AppError> {
    cds::check_reader(&app, caller.as_ref())?;
    negotiate(&headers, false)?;
    let page = cds::events(&app, &q).await?;
    Ok(json_answer(&with_links(page, &uri), app.settings.open_data_public))
}

async fn metric_sessions(
    State(app): State<AppState>,
    MaybeStaff(caller): MaybeStaff,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<MetricsQuery>,
) -> Result<Response, AppError> {
    cds::check_reader(&app, caller.as_ref())?;
    let format = negotiate(&headers, true)?;
    let table = cds::metric_sessions(&app, &q).await?;
    let public = app.settings.open_data_public;
    match format {
        Format::Csv => csv_answer(&table, "sessions", &uri, public),
        Format::Json => Ok(json_answer(&with_links(table.page, &uri), public)),
    }
}

async fn aggregates(
    State(app): State<AppState>,
    MaybeStaff(caller): MaybeStaff,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<MetricsQuery>,
) -> Result<Response, AppError> {
    cds::check_reader(&app, caller.as_ref())?;
    let format = negotiate(&headers, true)?;
    let table = cds::aggregates(&app, &q).await?;
    let public = app.settings.open_data_public;
    match format {
        Format::Csv => csv_answer(&table, "aggregates", &uri, public),
        Format::Json => Ok(json_answer(&table.page.body, public)),
    }
}

/// CDS's optional endpoints we do not serve: 501, as the specification asks.
async fn not_implemented() -> AppError {
    AppError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "Điểm cuối CDS tùy chọn này chưa được hỗ trợ.",
        "This optional CDS endpoint is not implemented.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn accept_headers() {
        assert_eq!(negotiate(&HeaderMap::new(), true).unwrap(), Format::Json);
        assert_eq!(negotiate(&accept("*/*"), false).unwrap(), Format::Json);
        assert_eq!(negotiate(&accept("application/vnd.cds+json;version=1.1"), false).unwrap(), Format::Json);
        assert_eq!(negotiate(&accept("application/vnd.cds+csv;version=1.1"), true).unwrap(), Format::Csv);
        assert_eq!(negotiate(&accept("text/csv, */*;q=0.1"), true).unwrap(), Format::Csv);
        assert_eq!(negotiate(&accept("text/html,application/xhtml+xml,*/*;q=0.8"), false).unwrap(), Format::Json);
        for refused in ["application/vnd.cds+json;version=1.0", "text/html", "application/vnd.cds+csv;version=1.1"] {
            assert_eq!(negotiate(&accept(refused), false).unwrap_err().status, StatusCode::NOT_ACCEPTABLE, "{refused}");
        }
        assert_eq!(negotiate(&accept("application/json;q=0"), false).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn next_links_keep_the_query_and_replace_the_cursor() {
        let uri: Uri = "/cds/events/events?event_time=2026-12-01T07&cursor=old&limit=5".parse().unwrap();
        assert_eq!(page_url(&uri, "1.2.3.0.9"), "/cds/events/events?event_time=2026-12-01T07&limit=5&cursor=1.2.3.0.9");
    }
}
