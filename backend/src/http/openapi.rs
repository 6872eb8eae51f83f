//! The OpenAPI document says exactly what the server does (issue 30): the refusals every
//! operation shares, and the formats the server's parsers accept, are added here once
//! rather than written on 79 operations by hand.
//!
//! - **Shared refusals.** A secured operation answers 401 (no or a bad token) and 403 (wrong
//!   role, outside the caller's scope); an operation with a JSON body answers 415 (not JSON)
//!   and 413 (too large); one with any input answers 400 (malformed input, e.g.
//!   `invalid_query`, `invalid_characters`); every operation but the probes may answer 503
//!   (`overloaded`, `timeout`). Each in the one error shape.
//! - **Text.** Every string the client sends is free of control characters (Unicode `Cc`),
//!   but tab and newline in the free-text fields (`note`, `reason`, `description`), as
//!   [`super::input`] enforces.
//! - **Formats.** Phone numbers, plates, months, days, signboard codes, `Idempotency-Key`,
//!   … carry the pattern of the parser that reads them ([`FORMATS`]); unit tests below check
//!   each pattern against its parser, so the document and the server cannot drift apart.

use serde_json::{Map, Value, json};

use super::input::FREE_TEXT_FIELDS;

/// Text without control characters (what [`super::input::char_allowed`] lets through).
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Free text: no control characters but tab, newline and carriage return.
pub const FREE_TEXT: &str = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$";
/// `Idempotency-Key`: 1–255 printable ASCII characters, no space.
pub const IDEMPOTENCY_KEY: &str = "^[!-~]{1,255}$";
/// A Vietnamese mobile number as [`crate::domain::phone::Phone::parse`] reads it: `+84`,
/// `84` or `0`, then 9 digits starting 3, 5, 7, 8 or 9; spaces, dots, dashes and brackets
/// anywhere between.
pub const PHONE: &str =
    "^(?: *\\+[ .()-]*8[ .()-]*4|[ .()-]*8[ .()-]*4|[ .()-]*0)[ .()-]*[35789](?:[ .()-]*[0-9]){8}[ .()-]*$";
/// A Vietnamese plate as [`crate::domain::plate::Plate::parse`] reads it: a province code
/// 11–99, a series of 1–2 letters, then 4–6 digits; `-`, `.`, space, `_`, `/` and `·`
/// anywhere between, letters in either case.
pub const PLATE: &str = "^[-. _/\u{b7}]*(?:1[-. _/\u{b7}]*[1-9]|[2-9][-. _/\u{b7}]*[0-9])(?:[-. _/\u{b7}]*[A-Za-z]){1,2}(?:[-. _/\u{b7}]*[0-9]){4,6}[-. _/\u{b7}]*$";
/// A month, `YYYY-MM`.
pub const MONTH: &str = "^[0-9]{4}-(?:0[1-9]|1[0-2])$";

/// The responses every operation of a kind shares: (status, description).
const SECURED: &[(&str, &str)] = &[
    ("401", "No bearer token, or one that is unknown, expired or revoked (`unauthorized`)"),
    ("403", "The token's role may not do this, or the resource is outside its scope (`forbidden`)"),
];
const JSON_BODY: &[(&str, &str)] = &[
    ("413", "The body is larger than the server takes (`payload_too_large`)"),
    ("415", "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)"),
];
const WITH_INPUT: (&str, &str) = (
    "400",
    "Malformed input: a missing or invalid path, query or body field, a control character, \
     an unknown field (`invalid_query`, `invalid_body`, `invalid_characters`, …; `details.field` names it)",
);
const KEYED: &[(&str, &str)] = &[
    (
        "409",
        "The first request with this `Idempotency-Key` is still being worked on (`idempotency_in_progress`): retry",
    ),
    ("422", "This `Idempotency-Key` was used for a different request (`idempotency_key_reused`)"),
];
const ANY: (&str, &str) =
    ("503", "The server is overloaded or the request timed out (`overloaded`, `timeout`): retry, with the same key");

/// Text with something besides blanks in it ([`crate::domain::city::text_fits`]), no
/// control characters.
pub const NONBLANK: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// [`NONBLANK`] free text (tab and line breaks allowed).
pub const NONBLANK_FREE: &str = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$";
/// Standard base64 with its padding (a photo queued offline).
pub const BASE64: &str = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";
/// A UUID as the handhelds write it (`8-4-4-4-12` hexadecimal digits).
pub const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A format the server's parsers enforce: where it applies, and the schema keywords it adds.
struct Format {
    /// A property name (in a request schema) or a parameter name.
    name: &'static str,
    /// Only in these schemas or operation paths (empty: everywhere the name appears).
    within: &'static [&'static str],
    keywords: fn() -> Value,
}

const NAMED: &[&str] = &["CreateDistrict", "CreatePoint", "CreateStaff", "CreateStreet", "UpdatePoint"];
const POINTS: &[&str] = &["CreatePoint", "UpdatePoint"];
const DURATIONS: &[&str] = &["StartSession", "ExtendSession", "WardenStartSession", "WardenExtendSession"];
const WARDEN_DURATIONS: &[&str] = &["WardenStartSession", "WardenExtendSession"];

fn text(pattern: &str, max: usize) -> Value {
    json!({ "pattern": pattern, "maxLength": max })
}

fn position(max: f64) -> Value {
    json!({ "minimum": -max, "maximum": max })
}

fn curb() -> Value {
    json!({
        "maxItems": crate::domain::city::MAX_CURB_VERTICES,
        "items": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "prefixItems": [
                { "type": "number", "minimum": -180, "maximum": 180 },
                { "type": "number", "minimum": -90, "maximum": 90 }
            ]
        }
    })
}

/// The formats of the request fields, by name (see the module's documentation).
const FORMATS: &[Format] = &[
    Format { name: "Idempotency-Key", within: &[], keywords: || json!({ "pattern": IDEMPOTENCY_KEY }) },
    Format { name: "phone", within: &[], keywords: || json!({ "pattern": PHONE, "maxLength": 32 }) },
    // Stripe's `t=<unix time>,v1=<hex>[,…]`: a header HTTP carries as ASCII.
    Format {
        name: "Stripe-Signature",
        within: &["/webhooks/stripe"],
        keywords: || json!({ "pattern": "^t=[0-9]+(?:,[a-z0-9]+=[0-9A-Za-z]+)+$" }),
    },
    Format { name: "plate", within: &[], keywords: || json!({ "pattern": PLATE, "maxLength": 32 }) },
    Format { name: "month", within: &[], keywords: || json!({ "pattern": MONTH }) },
    Format {
        name: "radius_m",
        within: &[],
        keywords: || json!({ "exclusiveMinimum": 0, "maximum": super::points::MAX_RADIUS_M }),
    },
    Format {
        name: "limit",
        within: &["/v1/points"],
        keywords: || json!({ "minimum": 1, "maximum": super::points::MAX_LIMIT }),
    },
    Format {
        name: "limit",
        within: &["/v1/points/search"],
        keywords: || json!({ "minimum": 1, "maximum": super::points::SEARCH_MAX_LIMIT }),
    },
    Format { name: "lat", within: &["/v1/points"], keywords: || position(90.0) },
    Format { name: "lon", within: &["/v1/points"], keywords: || position(180.0) },
    Format { name: "code", within: &["TokenRequest"], keywords: || json!({ "pattern": "^ *[0-9]{6} *$" }) },
    Format { name: "device", within: &["WardenLogin"], keywords: || text(NONBLANK, 64) },
    Format { name: "q", within: &[], keywords: || text(NONBLANK, crate::http::points::SEARCH_MAX_CHARS) },
    Format { name: "name", within: NAMED, keywords: || text(NONBLANK, crate::domain::city::MAX_NAME_CHARS) },
    Format { name: "code", within: &["CreateDistrict"], keywords: || json!({ "pattern": "^ *[A-Z]{2,4} *$" }) },
    // Letters in either case (upper-cased); that they are the street's district is a rule
    // against the data (422).
    Format {
        name: "code",
        within: &["CreatePoint"],
        keywords: || json!({ "pattern": "^ *[A-Za-z]{2,4}[0-9]{3,6} *$" }),
    },
    Format {
        name: "capacity",
        within: POINTS,
        keywords: || json!({ "minimum": 0, "maximum": crate::domain::city::MAX_CAPACITY }),
    },
    Format { name: "lat", within: POINTS, keywords: || position(90.0) },
    Format { name: "lon", within: POINTS, keywords: || position(180.0) },
    Format {
        name: "curb",
        within: &["CreatePoint"],
        keywords: || {
            let mut c = curb();
            c["minItems"] = json!(2);
            c
        },
    },
    Format {
        name: "curb",
        within: &["UpdatePoint"],
        // An empty list removes the line; otherwise 2 or more vertices.
        keywords: || {
            let mut c = curb();
            c["not"] = json!({ "type": "array", "minItems": 1, "maxItems": 1 });
            c
        },
    },
    Format { name: "vehicle_classes", within: &["CreatePoint", "UpdatePoint"], keywords: || json!({ "minItems": 1 }) },
    Format { name: "username", within: &["CreateStaff"], keywords: || json!({ "pattern": "^[A-Za-z0-9._-]{3,64}$" }) },
    Format {
        name: "password",
        within: &["CreateStaff"],
        keywords: || json!({ "pattern": NO_CONTROL, "minLength": crate::auth::PASSWORD_MIN, "maxLength": crate::auth::PASSWORD_MAX }),
    },
    Format { name: "note", within: &["ResolveDiscrepancy", "RefundDecision"], keywords: || text(NONBLANK_FREE, 1000) },
    Format { name: "reason", within: &["AdjustmentRequest"], keywords: || text(NONBLANK_FREE, 1000) },
    Format {
        name: "reason",
        within: &["RefundRequestBody", "StaffRefundRequest"],
        keywords: || text(NONBLANK_FREE, 500),
    },
    Format {
        name: "note",
        within: &["OpenShift", "CloseShift"],
        keywords: || text(FREE_TEXT, super::wardens::NOTE_MAX_CHARS),
    },
    Format {
        name: "amount",
        within: &["StaffRefundRequest", "RefundRequestBody", "QuoteRequest"],
        keywords: || json!({ "minimum": 1 }),
    },
    Format {
        name: "amount",
        within: &["AdjustmentRequest"],
        keywords: || json!({ "minimum": 1, "maximum": 10_000_000_000_i64 }),
    },
    Format { name: "name", within: &["TariffSpec"], keywords: || text(NONBLANK, crate::domain::city::MAX_NAME_CHARS) },
    Format {
        name: "amount",
        within: &["SandboxTopup"],
        keywords: || json!({ "minimum": 1_000, "maximum": 10_000_000 }),
    },
    Format {
        name: "cash_handed_over",
        within: &["CloseShift"],
        keywords: || json!({ "minimum": 0, "maximum": 10_000_000_000_i64 }),
    },
    Format { name: "turns", within: WARDEN_DURATIONS, keywords: || json!({ "minimum": 1, "maximum": 48 }) },
    Format { name: "minutes", within: WARDEN_DURATIONS, keywords: || json!({ "minimum": 1, "maximum": 48 * 60 }) },
    Format { name: "turns", within: DURATIONS, keywords: || json!({ "minimum": 1 }) },
    Format { name: "minutes", within: DURATIONS, keywords: || json!({ "minimum": 1 }) },
    Format { name: "minutes", within: &["QuoteRequest"], keywords: || json!({ "minimum": 1 }) },
    Format { name: "id", within: &["SyncAction"], keywords: || json!({ "pattern": UUID }) },
    Format {
        name: "actions",
        within: &["SyncBatch"],
        keywords: || json!({ "minItems": 1, "maxItems": crate::app::wardens::sync::SYNC_MAX_ACTIONS }),
    },
    Format {
        name: "status",
        within: &["/v1/finance/discrepancies"],
        keywords: || json!({ "enum": ["open", "resolved", "cleared", "all"] }),
    },
    Format {
        name: "status",
        within: &["/v1/finance/refund-requests"],
        keywords: || json!({ "enum": ["pending", "approved", "rejected", "all"] }),
    },
    Format {
        name: "format",
        within: &["/v1/finance/revenue", "/v1/finance/reconciliation"],
        keywords: || json!({ "enum": ["", "json", "csv"] }),
    },
    Format {
        name: "group_by",
        within: &["/v1/finance/revenue"],
        // Dimensions separated by commas (a repeated one is a rule between items: 422).
        keywords: || {
            let dim = "(?:district|street|point|channel|day|vehicle_class)";
            json!({ "pattern": format!("^ *(?:{dim} *)?(?:, *(?:{dim} *)?)*$") })
        },
    },
    Format { name: "from", within: &["/v1/finance/revenue"], keywords: || json!({ "format": "date" }) },
    Format { name: "to", within: &["/v1/finance/revenue"], keywords: || json!({ "format": "date" }) },
    Format { name: "date", within: &["/v1/finance/reconciliation"], keywords: || json!({ "format": "date" }) },
];

/// Parameters the server needs though their type has them optional.
const REQUIRED_PARAMS: &[(&str, &str)] = &[("/v1/finance/revenue", "from"), ("/v1/finance/revenue", "to")];

/// Rules between the fields of one request schema, as JSON Schema states them: "exactly one
/// of these", where a `null` counts as absent.
const EXACTLY_ONE_OF: &[(&str, &[&str])] = &[
    ("StartSession", &["minutes", "turns"]),
    ("ExtendSession", &["minutes", "turns"]),
    ("WardenStartSession", &["minutes", "turns"]),
    ("WardenExtendSession", &["minutes", "turns"]),
    ("QuoteRequest", &["minutes", "amount"]),
];

fn exactly_one_of(fields: &[&str]) -> Value {
    let branches: Vec<Value> = fields
        .iter()
        .map(|f| json!({ "required": [f], "properties": { *f: { "not": { "type": "null" } } } }))
        .collect();
    Value::Array(branches)
}

/// States the bounds this server was configured with (top-up amounts).
pub fn with_settings(doc: &mut Value, settings: &crate::Settings) {
    if let Some(amount) = doc.pointer_mut("/components/schemas/TopupRequest/properties/amount") {
        amount["minimum"] = json!(settings.topup_min);
        amount["maximum"] = json!(settings.topup_max);
    }
}

/// Makes `doc` exact: the shared refusals, text without control characters, the formats.
/// The result is the JSON document served (utoipa's types cannot hold every keyword added).
pub fn complete(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    complete_value(&mut v);
    v
}

fn complete_value(doc: &mut Value) {
    let requests = request_schemas(doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (_, op) in item.iter_mut() {
                if let Some(op) = op.as_object_mut() {
                    complete_operation(path, op);
                }
            }
        }
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in schemas.iter_mut() {
            // What the server answers is not constrained: only what it reads.
            if requests.contains(name) {
                constrain_schema(name, None, schema);
                if let Some((_, fields)) = EXACTLY_ONE_OF.iter().find(|(n, _)| n == name) {
                    schema["oneOf"] = exactly_one_of(fields);
                }
                if let Some(Value::Object(rules)) = schema_rules(name) {
                    for (k, v) in rules {
                        schema[k] = v;
                    }
                }
            }
        }
    }
}

/// The component schemas a request may carry (in a body or a parameter), transitively.
fn request_schemas(doc: &Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &Value, components: &Value, seen: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                if let Some(name) =
                    o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
                    && seen.insert(name.to_owned())
                    && let Some(s) = components.get(name)
                {
                    walk(s, components, seen);
                }
                o.values().for_each(|x| walk(x, components, seen));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, components, seen)),
            _ => {}
        }
    }
    let components = doc.pointer("/components/schemas").cloned().unwrap_or(Value::Null);
    let mut seen = std::collections::BTreeSet::new();
    for item in doc.get("paths").and_then(Value::as_object).into_iter().flat_map(|p| p.values()) {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            for key in ["requestBody", "parameters"] {
                if let Some(x) = op.get(key) {
                    walk(x, &components, &mut seen);
                }
            }
        }
    }
    seen
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

/// The form of `POST /v1/warden/violations` (read field by field by the handler).
fn violation_form() -> Value {
    json!({
        "type": "object",
        "required": ["plate", "point", "kind", "photo"],
        "additionalProperties": false,
        "dependentRequired": { "lat": ["lon"], "lon": ["lat"] },
        "properties": {
            "plate": { "type": "string", "pattern": PLATE, "maxLength": 32 },
            "point": { "type": "string", "pattern": NO_CONTROL },
            "kind": { "type": "string", "enum": ["unpaid", "overstay", "wrong_vehicle_class", "outside_bay", "obstruction"] },
            "note": { "type": "string", "pattern": FREE_TEXT, "maxLength": super::wardens::NOTE_MAX_CHARS },
            "lat": { "type": "number", "minimum": -90, "maximum": 90 },
            "lon": { "type": "number", "minimum": -180, "maximum": 180 },
            "photo": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5,
                "items": { "type": "string", "format": "binary", "contentMediaType": "image/jpeg" }
            }
        }
    })
}

/// Operations whose JSON body may be left out (every field has a default).
const OPTIONAL_BODIES: &[&str] = &["/v1/finance/periods/{month}/close"];

/// Refusals of one operation that its handler does not declare: (path, status, description).
const EXTRA_RESPONSES: &[(&str, &str, &str)] = &[
    ("/v1/finance/reconciliation", "422", "Not exactly one of `date` and `month` (`invalid_period`)"),
    (
        "/v1/finance/revenue",
        "422",
        "`to` before `from`, more than 366 days, or a dimension grouped twice (`invalid_range`, `invalid_group`)",
    ),
    ("/v1/admin/staff", "409", "The username is taken (`username_taken`)"),
    (
        "/v1/warden/sync",
        "422",
        "An action refused by a rule between actions or with the clock: two actions with one id, a device \
         time in the future (`invalid_action`; `details.code` says which)",
    ),
    (
        "/v1/finance/adjustments",
        "422",
        "The two accounts are the same, the period is closed, a warden's float debited below zero, … (`invalid_account`, `insufficient_balance`)",
    ),
];

/// Schemas whose rules between fields are replaced or completed here, as JSON Schema.
fn schema_rules(name: &str) -> Option<Value> {
    let absent = json!({ "type": "null" });
    Some(match name {
        "AdjustmentAccount" => json!({ "oneOf": [
            { "required": ["kind", "point"], "properties": {
                "kind": { "const": "point_revenue" }, "point": { "type": "string" }, "staff_id": absent } },
            { "required": ["kind", "staff_id"], "properties": {
                "kind": { "enum": ["warden_cash", "warden_float"] }, "staff_id": { "type": "integer" }, "point": absent } },
            { "required": ["kind"], "properties": {
                "kind": { "enum": ["unapplied_cash", "cash_office", "write_off"] }, "point": absent, "staff_id": absent } }
        ] }),
        "RefundRequestBody" => json!({ "oneOf": [
            { "properties": { "kind": { "const": "wallet_balance" }, "session_id": absent } },
            { "required": ["session_id"], "properties": { "kind": { "const": "session" }, "session_id": { "type": "integer" } } }
        ] }),
        "CreateStaff" => json!({ "oneOf": [
            { "required": ["username", "password"], "properties": {
                "username": { "type": "string" }, "password": { "type": "string" } } },
            { "properties": { "username": absent, "password": absent } }
        ] }),
        "ClosePeriod" => json!({
            "if": { "required": ["override_open_discrepancies"], "properties": { "override_open_discrepancies": { "const": true } } },
            "then": { "required": ["reason"], "properties": { "reason": {
                "type": "string", "pattern": NONBLANK_FREE, "maxLength": 1000 } } }
        }),
        "SyncAction" => {
            let kind =
                |k: &str, payload: Value| json!({ "properties": { "kind": { "const": k }, "payload": payload } });
            let duration = |max: u32| json!({ "type": ["integer", "null"], "minimum": 1, "maximum": max });
            json!({ "oneOf": [
                kind("check", json!({ "type": "object", "additionalProperties": false, "required": ["plate", "point"],
                    "properties": { "plate": { "type": "string", "pattern": PLATE, "maxLength": 32 },
                                    "point": { "type": "string", "pattern": NO_CONTROL } } })),
                kind("cash_session", json!({ "$ref": "#/components/schemas/WardenStartSession" })),
                kind("cash_extension", json!({ "type": "object", "additionalProperties": false, "required": ["session_id"],
                    "properties": { "session_id": { "type": "integer" }, "turns": duration(48), "minutes": duration(48 * 60),
                                    "payment": { "$ref": "#/components/schemas/WardenPayment" } },
                    "oneOf": exactly_one_of(&["minutes", "turns"]) })),
                kind("violation", json!({ "type": "object", "additionalProperties": false, "required": ["plate", "point", "kind", "photos"],
                    // A position is both coordinates or neither (`null` is none).
                    "anyOf": [
                        { "required": ["lat", "lon"], "properties": { "lat": { "type": "number" }, "lon": { "type": "number" } } },
                        { "properties": { "lat": { "type": "null" }, "lon": { "type": "null" } } }
                    ],
                    "properties": {
                        "plate": { "type": "string", "pattern": PLATE, "maxLength": 32 },
                        "point": { "type": "string", "pattern": NO_CONTROL },
                        "kind": { "enum": ["unpaid", "overstay", "wrong_vehicle_class", "outside_bay", "obstruction"] },
                        "note": { "type": "string", "pattern": FREE_TEXT, "maxLength": super::wardens::NOTE_MAX_CHARS },
                        "lat": { "type": ["number", "null"], "minimum": -90, "maximum": 90 },
                        "lon": { "type": ["number", "null"], "minimum": -180, "maximum": 180 },
                        "photos": { "type": "array", "minItems": 1, "maxItems": 5,
                                    "items": { "type": "string", "contentEncoding": "base64", "contentMediaType": "image/jpeg",
                                               "minLength": 4, "pattern": BASE64 } }
                    } })),
            ] })
        }
        _ => return None,
    })
}

fn complete_operation(path: &str, op: &mut Map<String, Value>) {
    if path == "/v1/warden/violations"
        && let Some(form) = op.get_mut("requestBody").and_then(|b| b.pointer_mut("/content/multipart~1form-data"))
    {
        form["schema"] = violation_form();
        form["encoding"] = json!({ "photo": { "contentType": "image/jpeg, image/png" } });
    }
    // A call that takes no fields: no body, or `{}` (not `null`).
    if let Some(json) = op.get_mut("requestBody").and_then(|b| b.pointer_mut("/content/application~1json"))
        && json.to_string().contains("#/components/schemas/EmptyBody")
    {
        json["schema"] = json!({ "$ref": "#/components/schemas/EmptyBody" });
    }
    if OPTIONAL_BODIES.contains(&path)
        && let Some(body) = op.get_mut("requestBody")
    {
        body["required"] = Value::Bool(false);
    }
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())));
    let json_body = op.get("requestBody").and_then(|b| b.pointer("/content/application~1json")).is_some();
    let has_input = op.get("requestBody").is_some()
        || op.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
    let probe = path == "/healthz";
    let keyed = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p.get("name").and_then(Value::as_str) == Some("Idempotency-Key")));
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params.iter_mut() {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            if let Some(schema) = p.get_mut("schema") {
                constrain_string(&name, Some(path), schema);
            }
            if REQUIRED_PARAMS.contains(&(path, name.as_str())) {
                p["required"] = Value::Bool(true);
            }
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    let mut add = |(status, description): (&str, &str)| {
        responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
    };
    if secured {
        SECURED.iter().copied().for_each(&mut add);
    }
    if json_body {
        JSON_BODY.iter().copied().for_each(&mut add);
    }
    if has_input {
        add(WITH_INPUT);
    }
    if keyed {
        KEYED.iter().copied().for_each(&mut add);
    }
    if !probe {
        add(ANY);
    }
    for (_, status, description) in EXTRA_RESPONSES.iter().filter(|(p, _, _)| *p == path) {
        add((status, description));
    }
    // An import's 422: the report of rejected rows, or the error of a file it cannot read.
    if path == "/v1/admin/points/import"
        && let Some(schema) = responses.get_mut("422").and_then(|r| r.pointer_mut("/content/application~1json/schema"))
    {
        *schema = json!({ "oneOf": [schema.clone(), { "$ref": "#/components/schemas/ErrorBody" }] });
    }
    // `format=csv` answers the same report as CSV.
    if matches!(path, "/v1/finance/revenue" | "/v1/finance/reconciliation")
        && let Some(content) = responses.get_mut("200").and_then(|r| r.get_mut("content"))
    {
        content["text/csv"] = json!({ "schema": { "type": "string" } });
    }
}

/// Walks a schema: every string property gets its format, or at least no control characters.
fn constrain_schema(within: &str, name: Option<&str>, schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    // Every request type refuses unknown fields (`deny_unknown_fields`, issue 30 bug 6).
    if obj.contains_key("properties") || within == "EmptyBody" && name.is_none() {
        obj.entry("additionalProperties").or_insert(Value::Bool(false));
    }
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for (prop, s) in props.iter_mut() {
            constrain_schema(within, Some(prop), s);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = obj.get_mut(key) {
            constrain_schema(within, name, s);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
            for s in list {
                constrain_schema(within, name, s);
            }
        }
    }
    constrain_string(name.unwrap_or_default(), Some(within), schema);
}

fn is_string(schema: &Map<String, Value>) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    }
}

/// A string schema named `name` (a property or a parameter) gets its [`FORMATS`] entry, or
/// the pattern of text without control characters.
fn constrain_string(name: &str, within: Option<&str>, schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    let format = FORMATS
        .iter()
        .find(|f| f.name == name && (f.within.is_empty() || within.is_some_and(|w| f.within.contains(&w))));
    if let Some(f) = format {
        if let Value::Object(kw) = (f.keywords)() {
            for (k, v) in kw {
                obj.insert(k, v);
            }
        }
        return;
    }
    if !is_string(obj) || obj.contains_key("pattern") || obj.contains_key("enum") || obj.contains_key("format") {
        return;
    }
    let pattern = if FREE_TEXT_FIELDS.contains(&name) { FREE_TEXT } else { NO_CONTROL };
    obj.insert("pattern".into(), Value::String(pattern.into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{phone::Phone, plate::Plate};
    use proptest::prelude::*;
    use regex::Regex;

    fn re(p: &str) -> Regex {
        Regex::new(p).expect("a valid pattern")
    }

    /// Each pattern accepts exactly what its parser accepts.
    fn agrees(pattern: &str, parses: impl Fn(&str) -> bool, samples: &[&str]) {
        let r = re(pattern);
        for s in samples {
            assert_eq!(r.is_match(s), parses(s), "{s:?}: the pattern and the parser disagree");
        }
    }

    #[test]
    fn phone_pattern_is_the_parsers_grammar() {
        agrees(
            PHONE,
            |s| Phone::parse(s).is_ok(),
            &[
                "0912345678",
                "0912 345 678",
                "+84912345678",
                "+84 91 234 5678",
                "84912345678",
                "(091) 234-5678",
                " 0912345678 ",
                "+0912345678",
                "0212345678",
                "091234567",
                "09123456789",
                "840912345678",
                "",
                "+",
                "(+84)912345678",
                "0912345678x",
                "0912\u{a0}345678",
            ],
        );
    }

    #[test]
    fn plate_pattern_is_the_parsers_grammar() {
        agrees(
            PLATE,
            |s| Plate::parse(s).is_ok(),
            &[
                "30A-123.45",
                "30a12345",
                "29H123456",
                "80NG12345",
                "29B1 12345",
                "30E1234",
                "10A12345",
                "09A12345",
                "11A1234",
                "30ABC12345",
                "30A123",
                "30A1234567",
                "",
                "30·A/12_345",
                "ı0A12345",
                "30ıA1234",
                "30A12345\u{a0}",
            ],
        );
    }

    #[test]
    fn month_pattern_is_the_parsers_grammar() {
        agrees(
            MONTH,
            |s| crate::domain::finance::parse_month(s).is_some(),
            &["2026-01", "2026-12", "2026-13", "2026-00", "26-01", "2026-1", "2026-01-01", "0000-01", ""],
        );
    }

    #[test]
    fn idempotency_key_pattern() {
        let r = re(IDEMPOTENCY_KEY);
        assert!(r.is_match("a") && r.is_match(&"k".repeat(255)) && r.is_match("7f1c-…".split('…').next().unwrap()));
        assert!(!r.is_match("") && !r.is_match(&"k".repeat(256)) && !r.is_match("a b") && !r.is_match("é"));
    }

    proptest! {
        #[test]
        fn phone_pattern_agrees_on_generated_text(s in "[ +0-9().-]{0,20}|\\PC{0,12}") {
            prop_assert_eq!(re(PHONE).is_match(&s), Phone::parse(&s).is_ok(), "{:?}", s);
        }

        #[test]
        fn plate_pattern_agrees_on_generated_text(s in "[-. _/\u{b7}0-9A-Za-z]{0,14}|\\PC{0,12}") {
            prop_assert_eq!(re(PLATE).is_match(&s), Plate::parse(&s).is_ok(), "{:?}", s);
        }

        #[test]
        fn month_pattern_agrees_on_generated_text(s in "[0-9]{4}-[0-9]{2}|[0-9-]{0,9}|\\PC{0,10}") {
            prop_assert_eq!(re(MONTH).is_match(&s), crate::domain::finance::parse_month(&s).is_some(), "{:?}", s);
        }
    }

    /// The document served is `docs/openapi.json`, byte for byte: a change to the API's
    /// contract is a change to that file, seen in review. After a deliberate change, rewrite
    /// it with `IPARKING_UPDATE_OPENAPI=1 cargo test -p iparking --lib openapi_snapshot`.
    #[test]
    fn openapi_snapshot() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let now = serde_json::to_string_pretty(&super::super::openapi()).unwrap() + "\n";
        if std::env::var_os("IPARKING_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &now).expect("writing docs/openapi.json");
            return;
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == now,
            "the OpenAPI document changed: review the change, then rewrite docs/openapi.json with \
             IPARKING_UPDATE_OPENAPI=1 cargo test -p iparking --lib openapi_snapshot"
        );
    }

    #[test]
    fn shared_refusals_are_documented() {
        let v = super::super::openapi();
        let start = &v["paths"]["/v1/sessions"]["post"]["responses"];
        for status in ["400", "401", "403", "413", "415", "503"] {
            assert!(start.get(status).is_some(), "POST /v1/sessions documents {status}");
        }
        let healthz = &v["paths"]["/healthz"]["get"]["responses"];
        assert!(healthz.get("401").is_none() && healthz.get("503").is_none());
    }
}
