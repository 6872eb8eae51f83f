//! Violations with photos (`POST /v1/warden/violations`, `GET /v1/warden/violations/{number}`,
//! `GET /v1/warden/photos/{sha256}`); citations on a driver's plates and by ticket.

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use iparking_mobile_api::{
    CitationDetails, CitationPhoto, CitationQuery, DriverCitation, ErrorBody, ViolationKind, ViolationView,
};

use super::super::{
    AppState,
    extract::{Driver, Json, Path, Query, Staff},
    idempotency::Idempotency,
};
use super::{Applying, PHOTOS_MAX, VIOLATION_BODY_MAX, Warden, claim_staff, json_answer};
use crate::{
    App,
    app::wardens::violations::{
        ViolationFields, check_photo, citation_for_staff, citation_not_found, issue_violation, photo_count_error,
        read_photo, ticket_citation, ticket_query,
    },
    error::AppError,
};

// ---- violations --------------------------------------------------------------------------

fn form_error(e: impl std::fmt::Display) -> AppError {
    AppError::bad_request(
        "invalid_form",
        format!("Biểu mẫu multipart không hợp lệ: {e}"),
        format!("Invalid multipart form: {e}"),
    )
}

/// Records a violation with photo evidence (`multipart/form-data`: `plate`, `point`, `kind`,
/// `note`, `lat`, `lon`, 1–5 `photo` files, JPEG or PNG by content, 5 MB each). Refused while
/// the plate has a valid session at the point. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/violations", tag = "wardens", security(("bearer" = [])),
    request_body(content = String, content_type = "multipart/form-data", description = "plate, point, kind, note, lat, lon, photo (1–5 files)"),
    params(("Idempotency-Key" = String, Header, description = "Unique per citation")),
    responses(
        (status = 201, description = "Issued", body = ViolationView),
        (status = 400, description = "Bad plate, fields, no photo or too many", body = ErrorBody),
        (status = 403, description = "Outside the assignment", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "The plate has a valid session here", body = ErrorBody),
        (status = 413, description = "A photo over 5 MB, or the form too large", body = ErrorBody),
        (status = 415, description = "A photo that is not JPEG or PNG; not a multipart form", body = ErrorBody),
    )
)]
pub async fn create_violation(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let bytes = to_bytes(body, VIOLATION_BODY_MAX).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Biểu mẫu quá lớn (tối đa 5 ảnh, mỗi ảnh 5 MB).",
            "The form is too large (at most 5 photos of 5 MB).",
        )
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static(""));
    if !content_type.to_str().unwrap_or("").starts_with("multipart/form-data") {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Cần gửi multipart/form-data.",
            "Send multipart/form-data.",
        ));
    }
    let boundary = multer::parse_boundary(content_type.to_str().unwrap_or("")).map_err(form_error)?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut plate, mut point, mut kind, mut note, mut lat, mut lon) = (None, None, None, None, None, None);
    let mut photos = Vec::new();
    let mut photo_parts = 0usize;
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "photo" {
            photo_parts += 1;
            let data = field.bytes().await.map_err(form_error)?;
            if photo_parts <= PHOTOS_MAX {
                photos.push(check_photo(data)?);
            }
            continue;
        }
        let text = field.text().await.map_err(form_error)?;
        if text.len() > 4096 {
            return Err(form_error(format!("field {name} is too long")));
        }
        super::super::input::check_text(&name, &text)?;
        match name.as_str() {
            "plate" => plate = Some(text),
            "point" => point = Some(text),
            "kind" => kind = Some(text),
            "note" => note = Some(text),
            "lat" => lat = Some(text.trim().parse::<f64>().map_err(|_| form_error("lat is not a number"))?),
            "lon" => lon = Some(text.trim().parse::<f64>().map_err(|_| form_error("lon is not a number"))?),
            other => return Err(form_error(format!("unknown field {other}"))),
        }
    }
    if let Some(e) = photo_count_error(photo_parts) {
        return Err(e);
    }
    let missing = |f: &str| form_error(format!("field {f} is required"));
    let kind_text = kind.ok_or_else(|| missing("kind"))?;
    let kind = ViolationKind::parse(&kind_text).ok_or_else(|| {
        AppError::bad_request(
            "invalid_kind",
            "Loại vi phạm: unpaid, overstay, wrong_vehicle_class, outside_bay, obstruction.",
            "Kind must be one of unpaid, overstay, wrong_vehicle_class, outside_bay, obstruction.",
        )
    })?;
    let fields = ViolationFields {
        plate: plate.ok_or_else(|| missing("plate"))?,
        point: point.ok_or_else(|| missing("point"))?,
        kind,
        note: note.unwrap_or_default(),
        lat,
        lon,
        photos: Vec::new(),
    };
    // A retry rebuilds the form with a new boundary: the key is bound to what the form
    // says (fields and photo hashes), not to its bytes.
    let canonical = serde_json::to_vec(&(
        &fields.plate,
        &fields.point,
        fields.kind,
        &fields.note,
        fields.lat,
        fields.lon,
        photos.iter().map(|p| p.sha256()).collect::<Vec<_>>(),
    ))
    .map_err(|e| AppError::internal(&e))?;
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/violations", &canonical).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let now = app.clock.now();
    let render = |r: Result<ViolationView, AppError>| r.and_then(|v| json_answer(StatusCode::CREATED, &v));
    let view = issue_violation(&app, &w, &fields, photos, &Applying::online(now, idem.claim(), &render)).await?;
    // The answer was stored with the key in the citation's transaction.
    let (status, json) = json_answer(StatusCode::CREATED, &view)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// One citation (staff covering its point).
#[utoipa::path(
    get, path = "/v1/warden/violations/{number}", tag = "wardens", security(("bearer" = [])),
    params(("number" = String, Path, description = "Citation number")),
    responses(
        (status = 200, description = "The citation", body = ViolationView),
        (status = 404, description = "No such citation (or outside the assignment)", body = ErrorBody),
    )
)]
pub async fn get_violation(
    State(app): State<AppState>,
    w: Warden,
    Path(number): Path<String>,
) -> Result<Json<ViolationView>, AppError> {
    Ok(Json(citation_for_staff(&app, &w, &number).await?))
}

/// A violation photo, for staff whose scope covers a citation that uses it.
#[utoipa::path(
    get, path = "/v1/warden/photos/{sha256}", tag = "wardens", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "SHA-256 of the photo, hex")),
    responses(
        (status = 200, description = "The photo (image/jpeg or image/png)"),
        (status = 401, description = "Not staff", body = ErrorBody),
        (status = 404, description = "No such photo (or outside the scope)", body = ErrorBody),
    )
)]
pub async fn get_photo(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(sha): Path<String>,
) -> Result<Response, AppError> {
    let not_found = || AppError::not_found("photo_not_found", "Không có ảnh này.", "No such photo.");
    let sha = sha.to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let scopes = app.store.photo_scopes(&sha).await?;
    if !scopes.iter().any(|(district, street)| p.covers_point(district, *street)) {
        return Err(not_found());
    }
    photo_file(&app, &sha, not_found).await
}

/// The stored photo `sha` (a recorded one) as a response; `not_found` if its file is missing.
async fn photo_file(app: &App, sha: &str, not_found: impl Fn() -> AppError) -> Result<Response, AppError> {
    let (bytes, ct) = read_photo(app, sha).await?.ok_or_else(not_found)?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(resp)
}

/// Citations on the driver's registered plates, newest first: number, time and point only.
/// Adding a plate needs no proof, so the reason, the note and the photos are not here: they
/// open with the ticket (`GET /v1/citations/{number}`).
#[utoipa::path(
    get, path = "/v1/me/citations", tag = "drivers", security(("bearer" = [])),
    responses(
        (status = 200, description = "Citations", body = [DriverCitation]),
        (status = 401, description = "Not logged in", body = ErrorBody),
    )
)]
pub async fn list_citations(
    State(app): State<AppState>,
    Driver(d): Driver,
) -> Result<Json<Vec<DriverCitation>>, AppError> {
    let rows = app.store.driver_citations(d.driver_id, 200).await?;
    Ok(Json(
        rows.into_iter()
            .map(|v| DriverCitation {
                number: v.number,
                plate: v.plate.as_str().to_owned(),
                point_code: v.point_code,
                point_name: v.point_name,
                issued_at: v.issued_at,
            })
            .collect(),
    ))
}

/// A citation's details for whoever holds the ticket: the number, the plate and the
/// verification code printed on it (no login needed). The reason, the note and the photos;
/// not the warden, not the position.
#[utoipa::path(
    get, path = "/v1/citations/{number}", tag = "drivers",
    params(("number" = String, Path, description = "Citation number"), CitationQuery),
    responses(
        (status = 200, description = "The citation", body = CitationDetails),
        (status = 404, description = "No such citation (or a wrong plate or code)", body = ErrorBody),
    )
)]
pub async fn get_citation(
    State(app): State<AppState>,
    Path(number): Path<String>,
    Query(q): Query<CitationQuery>,
) -> Result<Json<CitationDetails>, AppError> {
    let v = ticket_citation(&app, &number, &q).await?;
    let query = ticket_query(&v);
    Ok(Json(CitationDetails {
        number: v.number.clone(),
        plate: v.plate.as_str().to_owned(),
        point_code: v.point_code.clone(),
        point_name: v.point_name.clone(),
        street: v.street.clone(),
        kind: v.kind,
        note: v.note.clone(),
        issued_at: v.issued_at,
        photos: v
            .photos
            .iter()
            .enumerate()
            .map(|(i, (_, ct, size))| CitationPhoto {
                content_type: ct.clone(),
                size: *size,
                path: format!("/v1/citations/{}/photos/{i}?{query}", v.number),
            })
            .collect(),
    }))
}

/// A citation's photo for whoever holds the ticket (number, plate and code, as for the
/// details); `index` from 0 in the order of the details.
#[utoipa::path(
    get, path = "/v1/citations/{number}/photos/{index}", tag = "drivers",
    params(
        ("number" = String, Path, description = "Citation number"),
        ("index" = u32, Path, description = "The photo's place in the details, from 0"),
        CitationQuery,
    ),
    responses(
        (status = 200, description = "The photo (image/jpeg or image/png)"),
        (status = 404, description = "No such citation or photo (or a wrong plate or code)", body = ErrorBody),
    )
)]
pub async fn get_citation_photo(
    State(app): State<AppState>,
    Path((number, index)): Path<(String, String)>,
    Query(q): Query<CitationQuery>,
) -> Result<Response, AppError> {
    let v = ticket_citation(&app, &number, &q).await?;
    let (sha, _, _) = index
        .parse::<usize>()
        .ok()
        .and_then(|i| v.photos.get(i))
        .ok_or_else(|| AppError::not_found("photo_not_found", "Không có ảnh này.", "No such photo."))?;
    photo_file(&app, sha, citation_not_found).await
}
