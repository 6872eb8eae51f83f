//! Where text enters: the checks every path, query and JSON body passes before a handler
//! sees it, and the errors that name the field at fault in both languages.
//!
//! - No control character anywhere (PostgreSQL refuses a NUL in text, SQLite would store it,
//!   and no code, plate or name has one), except a tab or a line break in free text
//!   ([`FREE_TEXT_FIELDS`]).
//! - A JSON body is one object: not an array, not a bare value, no key twice in one object.
//!   Unknown fields are refused by the request types (`deny_unknown_fields`) and named here.

use std::collections::BTreeSet;

use axum::{
    extract::Request,
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{
    Deserialize,
    de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};

use crate::error::AppError;

/// The JSON fields (and form fields) holding free text: the only strings that may carry a
/// tab or a line break.
pub const FREE_TEXT_FIELDS: &[&str] = &["note", "reason", "description"];

/// Whether `c` may appear in text a client sends.
pub fn char_allowed(c: char, free_text: bool) -> bool {
    !c.is_control() || (free_text && matches!(c, '\t' | '\n' | '\r'))
}

/// 400 for a control character in `field` (`where_` says whether a path, a query parameter or
/// a body field).
fn control_character(where_: Where, field: &str) -> AppError {
    let field = &shown(field);
    let (vi, en) = match where_ {
        Where::Path => (
            "Đường dẫn chứa ký tự điều khiển (như NUL hoặc xuống dòng): hãy bỏ chúng đi.".to_owned(),
            "The path holds a control character (such as NUL or a line break): remove it.".to_owned(),
        ),
        Where::Query => (
            format!("Tham số truy vấn `{field}` chứa ký tự điều khiển (như NUL hoặc xuống dòng): hãy bỏ chúng đi."),
            format!("Query parameter `{field}` holds a control character (such as NUL or a line break): remove it."),
        ),
        Where::Body => (
            format!("Trường `{field}` chứa ký tự điều khiển (như NUL hoặc xuống dòng), không được phép ở đây."),
            format!("Field `{field}` holds a control character (such as NUL or a line break), not allowed there."),
        ),
    };
    let error = AppError::bad_request("invalid_characters", vi, en);
    match where_ {
        Where::Path => error,
        _ => error.with_details(serde_json::json!({ "field": field })),
    }
}

/// A name the client sent (a field, a key), as an error may echo it: control characters
/// become U+FFFD, and at most 64 characters are kept.
pub fn shown(name: &str) -> String {
    name.chars().take(64).map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

/// Refuses a text value of a form or multipart field with a control character.
pub fn check_text(field: &str, value: &str) -> Result<(), AppError> {
    let free_text = FREE_TEXT_FIELDS.contains(&field);
    if value.chars().all(|c| char_allowed(c, free_text)) { Ok(()) } else { Err(control_character(Where::Body, field)) }
}

#[derive(Clone, Copy)]
enum Where {
    Path,
    Query,
    Body,
}

/// Middleware: a request whose path or query, once percent-decoded, holds a control
/// character is answered 400 `invalid_characters` before routing.
pub async fn refuse_control_characters(req: Request, next: Next) -> Response {
    if let Err(e) = check_uri(req.uri()) {
        return e.into_response();
    }
    next.run(req).await
}

fn check_uri(uri: &axum::http::Uri) -> Result<(), AppError> {
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    if !path.chars().all(|c| char_allowed(c, false)) {
        return Err(control_character(Where::Path, ""));
    }
    if let Some(query) = uri.query() {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if !key.chars().chain(value.chars()).all(|c| char_allowed(c, false)) {
                let key: String = key.chars().filter(|c| char_allowed(*c, false)).take(64).collect();
                return Err(control_character(Where::Query, &key));
            }
        }
    }
    Ok(())
}

/// 415 unless the request says it sends JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), AppError> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Cần gửi JSON với Content-Type: application/json.",
            "Send JSON with Content-Type: application/json.",
        ))
    }
}

/// Parses a JSON body (the header says JSON; see [`parse_json_body`]).
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, AppError> {
    require_json(headers)?;
    parse_json_body(body)
}

/// Parses a JSON body into `T` after [`check_json_shape`]; a field the type refuses (unknown,
/// missing, twice, wrong type) is named in the error.
pub fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    check_json_shape(body)?;
    // JSON (and JSON Schema's `integer`) make no difference between 3 and 3.0: a number with
    // a zero fraction is read as the integer it is.
    if body.iter().any(|b| matches!(b, b'.' | b'e' | b'E'))
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body)
        && integral_floats_to_integers(&mut v)
    {
        let normalised = serde_json::to_vec(&v).map_err(|e| json_error(".", e))?;
        return parse_json_value(&normalised);
    }
    parse_json_value(body)
}

/// Rewrites every number with a zero fraction (`3.0`, `1e3`) as an integer; whether any was.
fn integral_floats_to_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Within ±2^53 a double holds every integer exactly.
            if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                let i = f as i64;
                *v = Value::from(i);
                return true;
            }
            false
        }
        Value::Array(items) => items.iter_mut().fold(false, |any, x| integral_floats_to_integers(x) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, x| integral_floats_to_integers(x) | any),
        _ => false,
    }
}

fn parse_json_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(&path, e.into_inner())
    })?;
    de.end().map_err(|e| json_error(".", e))?;
    Ok(value)
}

/// The body of a call that takes no fields: none at all, or `{}` (documented as optional).
#[derive(utoipa::ToSchema)]
pub struct EmptyBody {}

/// A body that must be empty: nothing, white space, or `{}`.
pub fn require_empty_body(headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    /// No fields at all.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    parse_json::<NoFields>(headers, body).map(|_| ())
}

fn json_error(path: &str, e: serde_json::Error) -> AppError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let text = e.to_string();
            let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(head, _)| head);
            let (field, vi, en) = describe(Where::Body, path, text);
            AppError::bad_request("invalid_body", vi, en).with_details(serde_json::json!({ "field": field }))
        }
        Category::Eof if e.line() <= 1 && e.column() == 0 => {
            AppError::bad_request("invalid_body", "Thiếu nội dung JSON.", "The JSON body is missing.")
        }
        _ => AppError::bad_request(
            "invalid_body",
            format!("Nội dung không phải JSON hợp lệ (dòng {}, cột {}).", e.line(), e.column()),
            format!("The body is not valid JSON (line {}, column {}).", e.line(), e.column()),
        ),
    }
}

/// 400 `invalid_query` naming the parameter at fault.
pub fn query_error(e: serde_path_to_error::Error<serde::de::value::Error>) -> AppError {
    let path = e.path().to_string();
    let (field, vi, en) = describe(Where::Query, &path, &e.into_inner().to_string());
    AppError::bad_request("invalid_query", vi, en).with_details(serde_json::json!({ "field": field }))
}

/// The field at fault and the two messages, in our own words, for a serde message `text`
/// raised at `path` (`.` at the top). What the client sent is echoed without its control
/// characters (U+FFFD in their place).
fn describe(where_: Where, path: &str, text: &str) -> (String, String, String) {
    let clean = |t: String| t.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect::<String>();
    let (field, vi, en) = describe_raw(where_, path, text);
    (clean(field), clean(vi), clean(en))
}

fn describe_raw(where_: Where, path: &str, text: &str) -> (String, String, String) {
    let path = if path == "." { "" } else { path };
    // serde_path_to_error's path ends at the unknown key itself, but at the object missing one.
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) || path.ends_with(&format!("]{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |t: &str| t.split('`').nth(1).map(str::to_owned);
    let (thing_vi, thing_en) = match where_ {
        Where::Query => ("Tham số truy vấn", "Query parameter"),
        _ => ("Trường", "Field"),
    };
    if let Some(rest) = text.strip_prefix("missing field ") {
        let f = join(&quoted(rest).unwrap_or_default());
        let (vi, en) = match where_ {
            Where::Query => (format!("Thiếu tham số truy vấn `{f}`."), format!("Missing query parameter `{f}`.")),
            _ => (format!("Thiếu trường `{f}`."), format!("Missing field `{f}`.")),
        };
        return (f, vi, en);
    }
    if let Some(rest) = text.strip_prefix("unknown field ") {
        let f = join(&quoted(rest).unwrap_or_default());
        let accepted = rest.split_once(", expected ").map(|(_, e)| e.to_owned());
        let (vi_more, en_more) = match &accepted {
            Some(list) => {
                (format!(" Các trường hợp lệ: {}.", list.trim_start_matches("one of ")), format!(" Expected {list}."))
            }
            None => (" Yêu cầu này không nhận trường nào.".to_owned(), " This request takes no fields.".to_owned()),
        };
        return (
            f.clone(),
            format!("{thing_vi} `{f}` không có trong yêu cầu này.{vi_more}"),
            format!("Unknown {} `{f}`.{en_more}", thing_en.to_lowercase()),
        );
    }
    if let Some(rest) = text.strip_prefix("duplicate field ") {
        let f = join(&quoted(rest).unwrap_or_default());
        return (f.clone(), format!("{thing_vi} `{f}` xuất hiện hai lần."), format!("{thing_en} `{f}` appears twice."));
    }
    let f = path.to_owned();
    if let Some(rest) = text.strip_prefix("unknown variant ") {
        let given = quoted(rest).unwrap_or_default();
        let list = rest.split_once(", expected ").map_or("", |(_, e)| e).trim_start_matches("one of ");
        return (
            f.clone(),
            format!("{thing_vi} `{f}`: giá trị `{given}` không hợp lệ; cần một trong: {list}."),
            format!("{thing_en} `{f}`: `{given}` is not one of {list}."),
        );
    }
    let en_detail =
        text.strip_prefix("invalid type: ").or_else(|| text.strip_prefix("invalid value: ")).unwrap_or(text);
    (
        f.clone(),
        format!("{thing_vi} `{f}` có giá trị không hợp lệ."),
        format!("{thing_en} `{f}` has an invalid value ({en_detail})."),
    )
}

/// Checks a JSON body's shape before it is deserialised: an object at the top, no key twice
/// in one object, and no control character in any key or string (a tab or a line break only
/// in the free-text fields).
pub fn check_json_shape(body: &[u8]) -> Result<(), AppError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(AppError::bad_request("invalid_body", "Thiếu nội dung JSON.", "The JSON body is missing.")),
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_body",
                "Nội dung phải là một đối tượng JSON {…} với các trường của yêu cầu.",
                "The body must be a JSON object {…} of the request's fields.",
            ));
        }
    }
    let mut problem = None;
    let de = &mut serde_json::Deserializer::from_slice(body);
    let checked = Shape { field: String::new(), free_text: false, problem: &mut problem }
        .deserialize(&mut *de)
        .and_then(|()| de.end());
    match (problem, checked) {
        (Some(Problem::Duplicate(f)), _) => Err(AppError::bad_request(
            "invalid_body",
            format!("Trường `{f}` xuất hiện hai lần."),
            format!("Field `{f}` appears twice."),
        )
        .with_details(serde_json::json!({ "field": f }))),
        (Some(Problem::Control(f)), _) => Err(control_character(Where::Body, &f)),
        (None, Err(e)) => Err(json_error(".", e)),
        (None, Ok(())) => Ok(()),
    }
}

enum Problem {
    Duplicate(String),
    Control(String),
}

/// One JSON value, checked as it is read; `field` is the key of the object member holding it.
struct Shape<'p> {
    field: String,
    free_text: bool,
    problem: &'p mut Option<Problem>,
}

impl Shape<'_> {
    fn fail<E: serde::de::Error>(self, p: Problem) -> E {
        *self.problem = Some(p);
        E::custom("refused")
    }
}

impl<'de> DeserializeSeed<'de> for Shape<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shape<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        if v.chars().all(|c| char_allowed(c, self.free_text)) {
            Ok(())
        } else {
            let field = self.field.clone();
            Err(self.fail(Problem::Control(field)))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Shape { field: self.field.clone(), free_text: self.free_text, problem: self.problem })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let field = if self.field.is_empty() { key.clone() } else { format!("{}.{key}", self.field) };
            if !key.chars().all(|c| char_allowed(c, false)) {
                return Err(self.fail(Problem::Control(field)));
            }
            let free_text = FREE_TEXT_FIELDS.contains(&key.as_str());
            if !seen.insert(key) {
                return Err(self.fail(Problem::Duplicate(field)));
            }
            map.next_value_seed(Shape { field, free_text, problem: self.problem })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        code: String,
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: i64,
    }

    fn err(body: &str) -> AppError {
        parse_json_body::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn objects_only() {
        assert!(parse_json_body::<Body>(br#" {"code":"HK001"} "#).is_ok());
        for body in ["[]", r#"["HK001"]"#, "1", "\"x\"", "null", "", "  "] {
            let e = err(body);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_body"), "{body}");
        }
        assert!(err("[]").en.contains("JSON object"));
        assert_eq!(err(r#"{"code":"a"} x"#).code, "invalid_body");
    }

    #[test]
    fn control_characters_refused_except_tab_and_newline_in_free_text() {
        let e = err("{\"code\":\"HK\\u0000001\"}");
        assert_eq!(e.code, "invalid_characters");
        assert_eq!(e.details.unwrap()["field"], "code");
        assert_eq!(err("{\"code\":\"HK\\n001\"}").code, "invalid_characters");
        assert_eq!(err("{\"code\":\"HK\\u007f\"}").code, "invalid_characters");
        assert_eq!(err("{\"code\":\"a\",\"note\":\"x\\u0000\"}").code, "invalid_characters");
        assert!(parse_json_body::<Body>("{\"code\":\"a\",\"note\":\"line\\n\\tnext\\r\\n\"}".as_bytes()).is_ok());
        assert_eq!(err("{\"co\\u0000de\":\"a\"}").code, "invalid_characters");
        // Nested: the path is named.
        let e = check_json_shape("{\"items\":[{\"n\":1,\"s\":\"\\u0001\"}]}".as_bytes()).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "items.s");
        assert!(check_text("note", "a\nb").is_ok());
        assert!(check_text("plate", "a\nb").is_err());
        assert!(check_text("note", "a\0b").is_err());
    }

    #[test]
    fn duplicate_and_unknown_fields_are_named() {
        let e = err(r#"{"code":"a","code":"b"}"#);
        assert_eq!(e.details.unwrap()["field"], "code");
        assert!(e.en.contains("twice"));
        let e = err(r#"{"code":"a","colour":"red"}"#);
        assert_eq!(e.code, "invalid_body");
        assert_eq!(e.details.as_ref().unwrap()["field"], "colour");
        assert!(e.en.contains("Unknown field `colour`"), "{}", e.en);
        assert!(e.vi.contains("`colour`"), "{}", e.vi);
        let e = err(r#"{"items":[{"n":1,"m":2}],"code":"a"}"#);
        assert_eq!(e.details.unwrap()["field"], "items[0].m");
        let e = err(r#"{"note":"x"}"#);
        assert_eq!(e.details.unwrap()["field"], "code");
        assert!(e.vi.starts_with("Thiếu trường `code`"), "{}", e.vi);
        let e = err(r#"{"code":5}"#);
        assert_eq!(e.details.unwrap()["field"], "code");
        assert!(!e.vi.contains("invalid type"), "Vietnamese in our own words: {}", e.vi);
    }

    #[test]
    fn empty_bodies() {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(require_empty_body(&h, b"").is_ok());
        assert!(require_empty_body(&h, b"{}").is_ok());
        let e = require_empty_body(&h, br#"{"x":1}"#).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "x");
        assert!(require_empty_body(&h, b"{}{}").is_err());
        assert!(require_empty_body(&h, br#"{"a":1,"a":2}"#).is_err());
        assert!(require_empty_body(&h, b"[]").is_err());
    }

    #[test]
    fn uris() {
        let ok = |u: &str| check_uri(&u.parse().unwrap()).is_ok();
        assert!(ok("/v1/points/HK001?lat=21.0&lon=105.8"));
        assert!(ok("/v1/points/H%C3%A0%20N%E1%BB%99i"));
        assert!(!ok("/v1/points/HK%00"));
        assert!(!ok("/v1/points/HK%0A"));
        assert!(!ok("/v1/points?district=HK%00"));
        assert!(!ok("/v1/points?dis%7Ftrict=HK"));
        let e = check_uri(&"/v1/x?district=H%01K".parse().unwrap()).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "district");
    }

    #[test]
    fn query_errors_name_the_field_in_both_languages() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Q {
            district: String,
            radius_m: Option<u32>,
        }
        let parse = |q: &str| {
            let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
            serde_path_to_error::deserialize::<_, Q>(de).map_err(query_error)
        };
        let e = parse("radius_m=5").unwrap_err();
        assert_eq!(e.code, "invalid_query");
        assert_eq!(e.vi, "Thiếu tham số truy vấn `district`.");
        assert_eq!(e.en, "Missing query parameter `district`.");
        let e = parse("district=HK&radius_m=far").unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "radius_m");
        assert!(e.vi.contains("`radius_m`") && !e.vi.contains("deserialize"), "{}", e.vi);
    }
}
