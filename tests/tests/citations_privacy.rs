//! Issue 30: adding a plate to an account needs no proof, so a driver's citation list must
//! not hand out another car's evidence. The list (`GET /v1/me/citations`) says only that a
//! citation exists (number, time, point); its reason, the warden's note and the photos
//! open at `GET /v1/citations/{number}` for whoever holds the ticket: the number, the plate
//! and the verification code printed on it, any mismatch answering the same 404
//! (docs/wardens.md). Staff keep their access. On SQLite + in-process live state and on
//! PostgreSQL + Redis.

use iparking_mobile_api::{
    CitationDetails, CitationPhoto, Client, ClientError, DriverCitation, PhotoUpload, StaffRole, VehicleClass,
    ViolationForm, ViolationKind, ViolationView,
};
use iparking_tests::{TestApp, assert_error, matrix, raw};
use serde_json::Value;

const NOTE: &str = "Xe đỗ trước cổng số 12, chủ xe vắng mặt";

/// A tiny JPEG: SOI, a JFIF APP0 segment, `seed`, EOI.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
    b.extend_from_slice(b"JFIF\0");
    b.extend_from_slice(&[1, 1, 0, 0, 1, 0, 1, 0, 0, seed, 0xff, 0xd9]);
    b
}

fn form(plate: &str, photos: Vec<(&str, Vec<u8>)>) -> ViolationForm {
    ViolationForm {
        plate: plate.into(),
        point: "HK001".into(),
        kind: ViolationKind::Obstruction,
        note: NOTE.into(),
        lat: Some(21.0257),
        lon: Some(105.846),
        photos: photos
            .into_iter()
            .map(|(ct, bytes)| PhotoUpload { filename: "p".into(), content_type: ct.into(), bytes })
            .collect(),
    }
}

/// `(status, code)` of an API error.
#[track_caller]
fn api_code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, error } => (status, error.code),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Raw `GET path` with `plate` and `code` in the query, no login.
async fn ticket_get(t: &TestApp, path: &str, plate: &str, code: &str) -> (u16, Value) {
    raw(reqwest::Client::new().get(t.url(path)).query(&[("plate", plate), ("code", code)])).await
}

/// The field names of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

/// Issues a citation on `plate` at HK001 with two photos.
async fn cite(w: &Client, plate: &str, seed: u8, key: &str) -> (ViolationView, Vec<u8>, Vec<u8>) {
    let (p, j) = (iparking_tests::tiny_png(seed), jpeg(seed));
    let v = w
        .create_violation(&form(plate, vec![("image/png", p.clone()), ("image/jpeg", j.clone())]), key)
        .await
        .expect("violation");
    (v, p, j)
}

matrix!(a_registered_plate_shows_that_a_citation_exists_not_its_evidence, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.privacy", &["HK"], &[]).await;
    let (v, p, j) = cite(&w, "30A-555.55", 1, "c-1").await;
    let (other, ..) = cite(&w, "29B-111.11", 2, "c-2").await;

    // The ticket: a random code, and where its holder opens the details.
    let code = v.verification_code.clone();
    assert_eq!(code.len(), 8, "{code}");
    assert!(code.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{code}");
    assert_ne!(code, other.verification_code);
    assert_eq!(v.verify_path, format!("/v1/citations/{}?plate=30A55555&code={code}", v.number));
    assert_eq!(w.violation(&v.number).await.expect("read back"), v, "the warden reads the same ticket back");

    // Anyone may put the plate on an account: the list says a citation exists, nothing more.
    let snooper_token = t.driver_token("0912610001").await;
    let snooper = t.client.with_token(snooper_token.clone());
    snooper.add_vehicle("30A-555.55", VehicleClass::Car).await.expect("no proof needed to add a plate");
    let list = raw(reqwest::Client::new().get(t.url("/v1/me/citations")).bearer_auth(&snooper_token)).await;
    assert_eq!(list.0, 200, "{list:?}");
    let items = list.1.as_array().expect("a list");
    assert_eq!(items.len(), 1, "{list:?}");
    assert_eq!(keys(&items[0]), ["issued_at", "number", "plate", "point_code", "point_name"], "{list:?}");
    let text = list.1.to_string();
    for secret in [NOTE, &v.photos[0].sha256, &v.photos[1].sha256, "/v1/warden/photos", &code] {
        assert!(!text.contains(secret), "the list shows {secret}: {text}");
    }
    let expected = DriverCitation {
        number: v.number.clone(),
        plate: "30A55555".into(),
        point_code: "HK001".into(),
        point_name: v.point_name.clone(),
        issued_at: v.issued_at,
    };
    assert_eq!(snooper.citations().await.expect("citations"), [expected]);

    // What the list gives away, the number and the plate, opens nothing; nor does any pair
    // or triple with one part wrong. Every refusal is the same answer.
    let details = format!("/v1/citations/{}", v.number);
    let photo0 = format!("/v1/citations/{}/photos/0", v.number);
    let unknown = ticket_get(&t, "/v1/citations/VP-HK-20000101-999999", "30A-555.55", &code).await;
    assert_error(&unknown, 404, "citation_not_found");
    let first = if code.starts_with('0') { '1' } else { '0' };
    let wrong_code = format!("{first}{}", &code[1..]);
    let other_details = format!("/v1/citations/{}", other.number);
    let refused: [(&str, &str, &str); 9] = [
        (&details, "30A-555.55", ""),
        (&details, "30A-555.56", &code),
        (&details, "29B-111.11", &code),
        (&details, "30A-555.55", &wrong_code),
        (&details, "not a plate", &code),
        (&details, "", &code),
        (&other_details, "30A-555.55", &code),
        (&other_details, "29B-111.11", &code),
        (&photo0, "30A-555.55", ""),
    ];
    for (path, plate, c) in refused {
        assert_eq!(ticket_get(&t, path, plate, c).await, unknown, "{path}?plate={plate}&code={c}");
    }
    for (plate, c) in [("30A-555.56", code.as_str()), ("30A-555.55", wrong_code.as_str())] {
        assert_eq!(
            api_code(t.client.citation(&v.number, plate, c).await.unwrap_err()),
            (404, "citation_not_found".into())
        );
        let e = snooper.citation_photo(&v.number, 1, plate, c).await.unwrap_err();
        assert_eq!(api_code(e), (404, "citation_not_found".into()));
    }
    // A driver's token opens no staff photo route.
    for f in &v.photos {
        let a = raw(reqwest::Client::new().get(t.url(&f.path)).bearer_auth(&snooper_token)).await;
        assert_error(&a, 401, "unauthorized");
    }

    // The ticket's holder (no login, the plate in any spelling, the code in any case) sees
    // the reason, the note and the photos; not the warden, not the position.
    let d = t.client.citation(&v.number, "30a 555.55", &code.to_lowercase()).await.expect("details");
    let q = format!("plate=30A55555&code={code}");
    let want = CitationDetails {
        number: v.number.clone(),
        plate: "30A55555".into(),
        point_code: "HK001".into(),
        point_name: v.point_name.clone(),
        street: v.street.clone(),
        kind: ViolationKind::Obstruction,
        note: NOTE.into(),
        issued_at: v.issued_at,
        photos: vec![
            CitationPhoto {
                content_type: "image/png".into(),
                size: p.len() as i64,
                path: format!("/v1/citations/{}/photos/0?{q}", v.number),
            },
            CitationPhoto {
                content_type: "image/jpeg".into(),
                size: j.len() as i64,
                path: format!("/v1/citations/{}/photos/1?{q}", v.number),
            },
        ],
    };
    assert_eq!(d, want);
    let by_path = raw(reqwest::Client::new().get(t.url(&v.verify_path))).await;
    assert_eq!(by_path.0, 200, "{by_path:?}");
    assert_eq!(
        keys(&by_path.1),
        ["issued_at", "kind", "note", "number", "photos", "plate", "point_code", "point_name", "street"]
    );
    assert!(!by_path.1.to_string().contains(&v.photos[0].sha256), "no photo hash: {}", by_path.1);
    for (i, (ct, bytes)) in [("image/png", &p), ("image/jpeg", &j)].into_iter().enumerate() {
        let got = t.client.citation_photo(&v.number, i as u32, "30A-555.55", &code).await.expect("photo");
        assert_eq!(got, (ct.to_owned(), bytes.clone()));
        let resp = reqwest::Client::new().get(t.url(&d.photos[i].path)).send().await.expect("photo by path");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.expect("bytes").to_vec(), *bytes);
    }
    let e = t.client.citation_photo(&v.number, 2, "30A-555.55", &code).await.unwrap_err();
    assert_eq!(api_code(e), (404, "photo_not_found".into()));

    // Staff keep their access: the warden and a city-wide inspector read the citation and
    // its photos as before.
    assert_eq!(w.photo(&v.photos[0].sha256).await.expect("staff photo"), ("image/png".to_owned(), p.clone()));
    let (inspector, _) = t.warden_with(StaffRole::Inspector, "city.inspector", &[], &[]).await;
    let seen = inspector.violation(&v.number).await.expect("inspector reads the citation");
    assert_eq!((seen.note.as_str(), seen.issued_by, seen.photos.len()), (NOTE, login.staff_id, 2));
    assert_eq!(inspector.photo(&v.photos[1].sha256).await.expect("inspector photo"), ("image/jpeg".to_owned(), j));

    // Both routes are in the published contract.
    let doc: Value = reqwest::get(t.url("/openapi.json")).await.expect("openapi").json().await.expect("json");
    for path in ["/v1/citations/{number}", "/v1/citations/{number}/photos/{index}"] {
        assert!(doc["paths"][path]["get"]["responses"]["404"].is_object(), "{path} missing from OpenAPI");
    }
});
