//! Staff accounts: creation (the admin route and `iparking staff add`) and the username and
//! password login shared by the handhelds and the finance dashboard.

use iparking_mobile_api::{StaffCreated, StaffRole};

use crate::{
    App,
    auth::{
        PASSWORD_MAX, PASSWORD_MIN, dummy_password_hash, hash_password, new_staff_token, token_hash, verify_password,
    },
    error::AppError,
    store::{NewStaff, Principal, StoreError},
};

/// A staff member to create (from the HTTP route or `iparking staff add`).
#[derive(Debug, Clone)]
pub struct StaffSpec {
    /// Display name (validated).
    pub name: String,
    /// Role.
    pub role: iparking_mobile_api::StaffRole,
    /// District codes.
    pub districts: Vec<String>,
    /// Street ids.
    pub streets: Vec<i64>,
    /// Username for password login.
    pub username: Option<String>,
    /// Password (hashed here, never stored).
    pub password: Option<String>,
}

impl StaffSpec {
    /// A staff member with a role and districts, no password login.
    pub fn new(name: String, role: iparking_mobile_api::StaffRole, districts: &[String]) -> Self {
        Self { name, role, districts: districts.to_vec(), streets: Vec::new(), username: None, password: None }
    }
}

fn district_not_found(code: &str) -> AppError {
    let shown: String = code.chars().take(20).collect();
    AppError::not_found(
        "district_not_found",
        format!("Không có quận mã {shown}."),
        format!("No district with code {shown}."),
    )
}

/// Creates a staff member (shared by the HTTP route and `iparking staff add`).
pub async fn add_staff(app: &App, spec: StaffSpec) -> Result<StaffCreated, AppError> {
    let StaffSpec { name, role, districts, streets, username, password } = spec;
    if role == StaffRole::Data && !(districts.is_empty() && streets.is_empty()) {
        // The CDS feeds it reads are the whole city's: a scope would promise what they do not do.
        return Err(AppError::unprocessable(
            "invalid_scope",
            "Vai trò data đọc dữ liệu mở của cả thành phố: không gán quận hay tuyến phố.",
            "The data role reads the whole city's open data: give it no district or street.",
        ));
    }
    let all = app.store.districts().await?;
    let mut district_ids = Vec::new();
    let mut codes = Vec::new();
    for code in &districts {
        let code = code.trim().to_uppercase();
        let d = all.iter().find(|d| d.code == code).ok_or_else(|| district_not_found(&code))?;
        district_ids.push(d.id);
        codes.push(d.code.clone());
    }
    district_ids.sort_unstable();
    district_ids.dedup();
    codes.sort();
    codes.dedup();
    let mut street_ids = streets;
    street_ids.sort_unstable();
    street_ids.dedup();
    for id in &street_ids {
        if app.store.street(*id).await?.is_none() {
            return Err(AppError::not_found(
                "street_not_found",
                format!("Không có tuyến phố số {id}."),
                format!("No street with id {id}."),
            ));
        }
    }
    let username = match username {
        Some(u) => {
            let u = u.to_ascii_lowercase();
            let ok = (3..=64).contains(&u.len())
                && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !ok {
                return Err(AppError::bad_request(
                    "invalid_username",
                    "Tên đăng nhập gồm 3–64 ký tự a-z, 0-9, dấu . _ -.",
                    "A username has 3–64 of a-z, 0-9, '.', '_', '-'.",
                ));
            }
            Some(u)
        }
        None => None,
    };
    let password_hash = match (&username, password) {
        (Some(_), Some(pw)) => {
            let n = pw.chars().count();
            if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
                return Err(AppError::bad_request(
                    "invalid_password",
                    format!("Mật khẩu cần {}–{} ký tự.", PASSWORD_MIN, PASSWORD_MAX),
                    format!("A password needs {}–{} characters.", PASSWORD_MIN, PASSWORD_MAX),
                ));
            }
            let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
                .await
                .map_err(|e| AppError::internal(&e))?
                .map_err(|e| AppError::internal(&e))?;
            Some(hash)
        }
        (None, None) => None,
        _ => {
            return Err(AppError::bad_request(
                "invalid_credentials_pair",
                "Tên đăng nhập và mật khẩu phải đi cùng nhau.",
                "Give a username and a password together.",
            ));
        }
    };
    let token = new_staff_token();
    let staff = NewStaff {
        name: name.clone(),
        role,
        district_ids,
        street_ids: street_ids.clone(),
        username: username.clone(),
        password_hash,
    };
    let (id, token_id) =
        app.store.create_staff(&staff, &token_hash(&token), app.clock.now()).await.map_err(|e| match &e {
            StoreError::Conflict(c) if c == "staff_username_key" => {
                AppError::conflict("username_taken", "Tên đăng nhập đã được dùng.", "This username is taken.")
            }
            _ => e.into(),
        })?;
    Ok(StaffCreated { id, name, role, districts: codes, streets: street_ids, username, token_id, token })
}

/// Username and password login shared by the handhelds and the finance dashboard: checks the
/// device name, the failed-attempt limits (per username and per client address, across
/// nodes), the password and the role, then issues a staff token on `device`. Returns the
/// token and the principal it resolves to. A right password with a role outside
/// `allowed_roles` is refused with 403 `forbidden` (and is not counted as a failure).
pub async fn password_login(
    app: &App,
    peer_ip: std::net::IpAddr,
    username: &str,
    password: &str,
    device: &str,
    allowed_roles: &[StaffRole],
) -> Result<(String, Principal), AppError> {
    let username = username.trim().to_lowercase();
    if !crate::domain::city::text_fits(device, 64) {
        return Err(AppError::bad_request(
            "invalid_device",
            "Tên thiết bị cần 1–64 ký tự.",
            "The device name needs 1–64 characters.",
        ));
    }
    let device = crate::domain::city::trim_blank(device);
    if username.is_empty() || username.len() > 64 || password.len() > PASSWORD_MAX {
        return Err(invalid_credentials());
    }
    let s = &app.settings;
    let user_key = format!("login-user:{username}");
    let ip_key = format!("login-ip:{peer_ip}");
    // Failed attempts are counted; once over the limit even the right password is refused
    // (checked before the password, so a blocked caller learns nothing more).
    let blocked = app.live.rate_count(&user_key).await? >= s.login_per_user
        || app.live.rate_count(&ip_key).await? >= s.login_per_ip;
    if blocked {
        return Err(AppError::too_many_requests(
            "rate_limited",
            "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 15 phút.",
            "Too many failed logins. Please try again in 15 minutes.",
        ));
    }
    let login = app.store.staff_by_username(&username).await?;
    let phc = login.as_ref().map_or_else(|| dummy_password_hash().to_owned(), |l| l.password_hash.clone());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .map_err(|e| AppError::internal(&e))?;
    let Some(login) = login.filter(|_| ok) else {
        tracing::info!("password login refused");
        app.live.rate_limit(&user_key, s.login_per_user, s.login_window).await?;
        app.live.rate_limit(&ip_key, s.login_per_ip, s.login_window).await?;
        return Err(invalid_credentials());
    };
    if !allowed_roles.contains(&login.role) {
        let roles = allowed_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
        return Err(AppError::forbidden(
            format!("Tài khoản này không đăng nhập được ở đây (chỉ dành cho: {roles})."),
            format!("This account cannot log in here (only: {roles})."),
        ));
    }
    let token = new_staff_token();
    let now = app.clock.now();
    app.store.create_staff_token(login.staff_id, &token_hash(&token), device, now).await?;
    let p = app
        .store
        .principal_by_token(&token_hash(&token))
        .await?
        .ok_or_else(|| AppError::internal(&"a token just issued does not resolve"))?;
    Ok((token, p))
}

pub fn invalid_credentials() -> AppError {
    AppError::unauthorized_as("invalid_credentials", "Sai tên đăng nhập hoặc mật khẩu.", "Wrong username or password.")
}
