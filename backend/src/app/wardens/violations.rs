//! Violations with photo evidence, and the citations they become: issued by a warden at a
//! point of their assignment (refused while the vehicle is paid there), read by staff who
//! cover the point and by whoever holds the ticket (number, plate and code).

use std::path::PathBuf;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use iparking_mobile_api::{CitationQuery, PhotoRef, ViolationKind, ViolationView};
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    Applying, NOTE_MAX_CHARS, PHOTO_MAX_BYTES, PHOTOS_MAX, Warden, render_failed, same_code, verification_code,
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

impl Photo {
    /// SHA-256 of its bytes (hex): its name in the photo directory.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Checks a photo's size and kind by its content (magic bytes), not its name.
pub fn check_photo(bytes: Bytes) -> Result<Photo, AppError> {
    if bytes.len() > PHOTO_MAX_BYTES {
        return Err(AppError::payload_too_large(
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
        return Err(AppError::unsupported_media_type(
            "photo_not_image",
            "Ảnh phải là JPEG hoặc PNG.",
            "Photos must be JPEG or PNG images.",
        ));
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Photo { bytes, content_type, ext, sha256 })
}

/// 1 to [`PHOTOS_MAX`] photos, or why not.
pub fn photo_count_error(n: usize) -> Option<AppError> {
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

/// No citation while the vehicle is paid at the point.
pub fn session_valid(s: &SessionRow, now: DateTime<Utc>) -> AppError {
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
pub fn ticket_query(v: &ViolationRow) -> String {
    format!("plate={}&code={}", v.plate.as_str(), v.verification_code)
}

/// Any mismatch of a ticket's number, plate or code.
pub fn citation_not_found() -> AppError {
    AppError::not_found(
        "citation_not_found",
        "Không có biên bản với số, biển số và mã kiểm tra này.",
        "No citation with this number, plate and verification code.",
    )
}

/// The citation the ticket names: the number, the plate and the code must all match, and
/// any mismatch (or malformed input) answers the same `404`, so nothing tells which was
/// wrong.
pub async fn ticket_citation(app: &App, number: &str, q: &CitationQuery) -> Result<ViolationRow, AppError> {
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

/// A stored photo's bytes and content type; `None` when its file is missing.
pub async fn read_photo(app: &App, sha: &str) -> Result<Option<(Vec<u8>, &'static str)>, AppError> {
    for (ext, ct) in [("jpg", "image/jpeg"), ("png", "image/png")] {
        let path = photo_path(&app.settings.photo_dir, sha, ext);
        match tokio::fs::read(&path).await {
            Ok(bytes) => return Ok(Some((bytes, ct))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AppError::internal(&format!("photo read: {e}"))),
        }
    }
    tracing::error!("a recorded photo is missing from the photo directory");
    Ok(None)
}

/// A citation, for staff covering its point; any other answers `404` as if unknown.
pub async fn citation_for_staff(app: &App, w: &Warden, number: &str) -> Result<ViolationView, AppError> {
    let not_found = || AppError::not_found("violation_not_found", "Không có biên bản này.", "No such citation.");
    if number.len() > 40 {
        return Err(not_found());
    }
    let v = app.store.violation(number.trim()).await?.ok_or_else(not_found)?;
    if !w.0.covers_point(&v.district, v.street_id) {
        return Err(not_found());
    }
    Ok(violation_view(&v))
}
