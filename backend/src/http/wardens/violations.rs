//! Violations with photos; citations on a driver's plates.

use std::path::PathBuf;

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use iparking_mobile_api::{
    CitationDetails, CitationPhoto, CitationQuery, DriverCitation, ErrorBody, PhotoRef, ViolationKind, ViolationView,
};
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::super::{
    AppState,
    extract::{Driver, Json, Path, Query, Staff},
    idempotency::Idempotency,
};
use crate::{
    App,
    app::points::point_for,
    domain::{city::validate_position, plate::Plate},
    error::AppError,
    store::{
        drivers::SessionRow,
        wardens::{NewViolation, ViolationOutcome, ViolationRow},
    },
};

use super::cash::{json_answer, render_failed, same_code, verification_code};
use super::{Applying, NOTE_MAX_CHARS, PHOTO_MAX_BYTES, PHOTOS_MAX, VIOLATION_BODY_MAX, Warden, claim_staff};

// ---- violations --------------------------------------------------------------------------

/// The fields of a violation, from the form or a sync payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationFields {
    /// Plate.
    pub plate: String,
    /// Point code.
    pub point: String,
    /// Kind.
    pub kind: ViolationKind,
    /// Note.
    #[serde(default)]
    pub note: String,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Photos as base64 (sync only).
    #[serde(default)]
    pub photos: Vec<String>,
}

/// A photo checked by content.
pub struct Photo {
    bytes: Bytes,
    content_type: &'static str,
    ext: &'static str,
    sha256: String,
}

/// Checks a photo's size and kind by its content (magic bytes), not its name.
pub fn check_photo(bytes: Bytes) -> Result<Photo, AppError> {
    if bytes.len() > PHOTO_MAX_BYTES {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "photo_too_large",
            "Mỗi ảnh tối đa 5 MB.",
            "Each photo may be at most 5 MB.",
        ));
    }
    let (content_type, ext) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ("image/png", "png")
    } else {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "photo_not_image",
            "Ảnh phải là JPEG hoặc PNG.",
            "Photos must be JPEG or PNG images.",
        ));
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Photo { bytes, content_type, ext, sha256 })
}

pub(super) fn photo_count_error(n: usize) -> Option<AppError> {
    if n == 0 {
        Some(AppError::bad_request(
            "photos_required",
            "Cần ít nhất một ảnh làm bằng chứng.",
            "At least one photo is needed as evidence.",
        ))
    } else if n > PHOTOS_MAX {
        Some(AppError::bad_request(
            "too_many_photos",
            format!("Tối đa {PHOTOS_MAX} ảnh cho mỗi vi phạm."),
            format!("At most {PHOTOS_MAX} photos per violation."),
        ))
    } else {
        None
    }
}

fn photo_path(dir: &std::path::Path, sha256: &str, ext: &str) -> PathBuf {
    dir.join(&sha256[..2]).join(format!("{sha256}.{ext}"))
}

/// Stores a photo under its content hash: written once (a temp file renamed into place),
/// the same photo twice is stored once.
async fn store_photo(dir: &std::path::Path, p: &Photo) -> Result<(), AppError> {
    let path = photo_path(dir, &p.sha256, p.ext);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(dir);
    tokio::fs::create_dir_all(parent).await.map_err(|e| AppError::internal(&format!("photo directory: {e}")))?;
    let tmp = parent.join(format!(".{}.{:x}.tmp", p.sha256, rand::rng().random::<u64>()));
    tokio::fs::write(&tmp, &p.bytes).await.map_err(|e| AppError::internal(&format!("photo write: {e}")))?;
    tokio::fs::rename(&tmp, &path).await.map_err(|e| AppError::internal(&format!("photo rename: {e}")))?;
    Ok(())
}

/// A violation's plate, position and note, validated.
type CheckedFields = (Plate, Option<(f64, f64)>, String);

/// Validates the fields of a violation (everything but the photos and the point's scope).
pub fn check_violation_fields(f: &ViolationFields) -> Result<CheckedFields, AppError> {
    let plate = Plate::parse(&f.plate).map_err(AppError::from)?;
    let note = crate::domain::city::trim_blank(&f.note).to_owned();
    if f.note.chars().count() > NOTE_MAX_CHARS {
        return Err(AppError::bad_request(
            "invalid_note",
            format!("Ghi chú tối đa {NOTE_MAX_CHARS} ký tự."),
            format!("The note may be at most {NOTE_MAX_CHARS} characters."),
        ));
    }
    let position = match (f.lat, f.lon) {
        (Some(lat), Some(lon)) => {
            validate_position(lat, lon).map_err(AppError::from)?;
            Some((lat, lon))
        }
        (None, None) => None,
        _ => return Err(AppError::bad_request("invalid_coordinates", "Cần cả lat và lon.", "Give both lat and lon.")),
    };
    Ok((plate, position, note))
}

/// Issues a violation at `at` with checked photos (stored before the citation is written).
pub async fn issue_violation(
    app: &App,
    w: &Warden,
    f: &ViolationFields,
    photos: Vec<Photo>,
    how: &Applying<'_, Result<ViolationView, AppError>>,
) -> Result<ViolationView, AppError> {
    let Applying { at, action_id, idem, render } = *how;
    let (plate, position, note) = check_violation_fields(f)?;
    if let Some(e) = photo_count_error(photos.len()) {
        return Err(e);
    }
    let point = point_for(app, &f.point).await?;
    w.require_point(&point)?;
    for p in &photos {
        store_photo(&app.settings.photo_dir, p).await?;
    }
    let v = NewViolation {
        staff_id: w.0.staff_id,
        point_id: point.id,
        district_code: point.district_code.clone(),
        plate,
        kind: f.kind,
        note,
        position,
        photos: photos.iter().map(|p| (p.sha256.clone(), p.content_type.to_owned(), p.bytes.len() as i64)).collect(),
        issued_at: at,
        verification_code: verification_code(),
    };
    let now = app.clock.now();
    let answer = |o: &ViolationOutcome| render(violation_result(o, now)).map_err(render_failed);
    match app.store.issue_violation(&v, action_id, idem, &answer, now).await? {
        ViolationOutcome::Issued(row) => {
            tracing::info!(violation.id = row.id, staff.id = w.0.staff_id, point.code = %point.code, "violation issued");
            Ok(violation_view(&row))
        }
        ViolationOutcome::SessionValid(s) => {
            // No citation: drop the photos no other citation uses.
            for p in &photos {
                if app.store.photo_scopes(&p.sha256).await?.is_empty() {
                    let _ = tokio::fs::remove_file(photo_path(&app.settings.photo_dir, &p.sha256, p.ext)).await;
                }
            }
            Err(session_valid(&s, now))
        }
    }
}

/// What a violation outcome comes to (its answer), without effects.
fn violation_result(o: &ViolationOutcome, now: DateTime<Utc>) -> Result<ViolationView, AppError> {
    match o {
        ViolationOutcome::Issued(row) => Ok(violation_view(row)),
        ViolationOutcome::SessionValid(s) => Err(session_valid(s, now)),
    }
}

pub(super) fn session_valid(s: &SessionRow, now: DateTime<Utc>) -> AppError {
    let until = crate::domain::tariff::local_time_for_people(s.paid_until, now);
    AppError::conflict(
        "session_valid",
        format!("Xe đã trả phí tại điểm {} đến {until}: không lập biên bản.", s.point_code),
        format!("This vehicle is paid at {} until {until}: no citation.", s.point_code),
    )
    .with_details(serde_json::json!({ "session_id": s.id, "paid_until": s.paid_until }))
}

/// A citation as staff see it.
pub fn violation_view(v: &ViolationRow) -> ViolationView {
    ViolationView {
        number: v.number.clone(),
        plate: v.plate.as_str().to_owned(),
        point_code: v.point_code.clone(),
        point_name: v.point_name.clone(),
        street: v.street.clone(),
        district: v.district.clone(),
        kind: v.kind,
        note: v.note.clone(),
        lat: v.lat,
        lon: v.lon,
        issued_by: v.staff_id,
        issued_at: v.issued_at,
        photos: v
            .photos
            .iter()
            .map(|(sha, ct, size)| PhotoRef {
                sha256: sha.clone(),
                content_type: ct.clone(),
                size: *size,
                path: format!("/v1/warden/photos/{sha}"),
            })
            .collect(),
        verification_code: v.verification_code.clone(),
        verify_path: format!("/v1/citations/{}?{}", v.number, ticket_query(v)),
    }
}

/// `plate=…&code=…` of a citation's ticket (both ASCII letters and digits: nothing to escape).
fn ticket_query(v: &ViolationRow) -> String {
    format!("plate={}&code={}", v.plate.as_str(), v.verification_code)
}

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
        photos.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>(),
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
    let not_found = || AppError::not_found("violation_not_found", "Không có biên bản này.", "No such citation.");
    if number.len() > 40 {
        return Err(not_found());
    }
    let v = app.store.violation(number.trim()).await?.ok_or_else(not_found)?;
    if !w.0.covers_point(&v.district, v.street_id) {
        return Err(not_found());
    }
    Ok(Json(violation_view(&v)))
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
    for (ext, ct) in [("jpg", "image/jpeg"), ("png", "image/png")] {
        let path = photo_path(&app.settings.photo_dir, sha, ext);
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let mut resp = bytes.into_response();
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
                h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
                return Ok(resp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AppError::internal(&format!("photo read: {e}"))),
        }
    }
    tracing::error!("a recorded photo is missing from the photo directory");
    Err(not_found())
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

fn citation_not_found() -> AppError {
    AppError::not_found(
        "citation_not_found",
        "Không có biên bản với số, biển số và mã kiểm tra này.",
        "No citation with this number, plate and verification code.",
    )
}

/// The citation the ticket names: the number, the plate and the code must all match, and
/// any mismatch (or malformed input) answers the same `404`, so nothing tells which was
/// wrong.
async fn ticket_citation(app: &App, number: &str, q: &CitationQuery) -> Result<ViolationRow, AppError> {
    if number.len() > 40 || q.plate.len() > 32 || q.code.len() > 16 {
        return Err(citation_not_found());
    }
    let plate = Plate::parse(&q.plate).map_err(|_| citation_not_found())?;
    let v = app.store.violation(number.trim()).await?.ok_or_else(citation_not_found)?;
    // Both checked, whatever the first answers.
    let code_ok = same_code(&q.code, &v.verification_code);
    if !(code_ok & (v.plate == plate)) {
        return Err(citation_not_found());
    }
    Ok(v)
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
