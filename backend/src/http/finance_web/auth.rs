//! Signing in and out of the dashboard.

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use iparking_mobile_api::StaffRole;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    DEVICE,
    access::current_user,
    guard::{post_allowed, safe_next},
    labels::Lang,
    request::{Ctx, foreign_origin},
    views::{Flash, flash, layout},
};
use crate::app::staff::password_login;
use crate::{
    error::AppError,
    http::{AppState, Peer},
};

/// The query of the login page.
#[derive(Deserialize)]
struct LoginQuery {
    /// The dashboard page to return to.
    next: Option<String>,
}

/// The login form.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// The dashboard page to return to.
    next: Option<String>,
}

fn login_form(ctx: &Ctx, next: &str, username: &str, error: Option<&str>) -> Markup {
    html! {
        section class="login" {
            h1 { (ctx.t("Đăng nhập tài chính", "Finance sign-in")) }
            @if let Some(e) = error {
                (flash(Flash::Error, e))
            }
            form method="post" action="/finance/login" class="card" {
                input type="hidden" name="next" value=(next);
                label {
                    (ctx.t("Tên đăng nhập", "Username"))
                    input type="text" name="username" value=(username) autocomplete="username" required maxlength="64"
                        autofocus;
                }
                label {
                    (ctx.t("Mật khẩu", "Password"))
                    input type="password" name="password" autocomplete="current-password" required maxlength="128";
                }
                button type="submit" id="login-submit" { (ctx.t("Đăng nhập", "Sign in")) }
            }
            p class="hint" {
                (ctx.t(
                    "Dành cho nhân viên tài chính (và quản trị viên, chỉ xem).",
                    "For finance staff (and administrators, read only)."
                ))
            }
        }
    }
}

pub(super) async fn login_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let q: LoginQuery = match ctx.query() {
        Ok(q) => q,
        Err(e) => return ctx.error_page(None, None, &e),
    };
    let next = safe_next(q.next.as_deref());
    if let Ok(Some(_)) = current_user(&app, &headers).await {
        return ctx.redirect(&next);
    }
    let title = ctx.t("Đăng nhập", "Sign in");
    ctx.html(StatusCode::OK, layout(&ctx, None, None, title, login_form(&ctx, &next, "", None)))
}

pub(super) async fn login_submit(
    State(app): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let form: LoginForm = match ctx.read_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return ctx.error_page(None, None, &e),
    };
    let next = safe_next(form.next.as_deref());
    let roles = [StaffRole::Finance, StaffRole::Admin];
    match password_login(&app, peer.ip(), &form.username, &form.password, DEVICE, &roles).await {
        Ok((token, p)) => {
            tracing::info!(staff.id = p.staff_id, token.id = p.token_id, "finance dashboard login");
            let mut r = ctx.redirect(&next);
            ctx.set_session_cookie(&mut r, &token);
            r
        }
        Err(e) => {
            let title = ctx.t("Đăng nhập", "Sign in");
            let page = login_form(&ctx, &next, form.username.trim(), Some(e.message(ctx.lang == Lang::En)));
            ctx.html(e.status, layout(&ctx, None, None, title, page))
        }
    }
}

/// `GET /finance/logout` changes nothing (a link, a prefetch or another site's `<img>` must
/// not sign anyone out): signed in, a page with the logout button; signed out, the login page.
pub(super) async fn logout_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match current_user(&app, &headers).await {
        Ok(Some(p)) => p,
        Ok(None) => return ctx.redirect("/finance/login"),
        Err(e) => return ctx.error_page(None, None, &e),
    };
    let title = ctx.t("Đăng xuất", "Log out");
    let body = html! {
        section class="login" {
            h1 { (title) }
            form method="post" action="/finance/logout" class="card" {
                button type="submit" id="logout-submit" { (ctx.t("Đăng xuất", "Log out")) }
            }
            p { a href="/finance" { (ctx.t("Về trang doanh thu", "Back to revenue")) } }
        }
    };
    ctx.html(StatusCode::OK, layout(&ctx, Some(&p), None, title, body))
}

pub(super) async fn logout(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    if !post_allowed(&headers) {
        return ctx.error_page(None, None, &foreign_origin());
    }
    match current_user(&app, &headers).await {
        Ok(Some(p)) => {
            if let Err(e) = app.revoke_staff_token(p.token_id).await {
                return ctx.error_page(None, None, &AppError::from(e));
            }
            tracing::info!(staff.id = p.staff_id, token.id = p.token_id, "finance dashboard logout");
        }
        Ok(None) => {}
        Err(e) => return ctx.error_page(None, None, &e),
    }
    let mut r = ctx.redirect("/finance/login");
    ctx.clear_session_cookie(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;
    use crate::http::finance_web::request::read_fields;

    #[test]
    fn the_login_form_keeps_what_was_typed_escaped() {
        let ctx = Ctx::new(&HeaderMap::new(), &"/finance/login".parse().unwrap());
        let form = login_form(&ctx, "/finance?month=2026-11&x=\"", "<ke\"toan>", Some("Sai <mật khẩu>.")).into_string();
        assert!(form.starts_with("<section class=\"login\"><h1>Đăng nhập tài chính</h1>"), "{form}");
        assert!(form.contains("<p class=\"flash error\" role=\"alert\">Sai &lt;mật khẩu&gt;.</p>"), "{form}");
        assert!(
            form.contains("<input type=\"hidden\" name=\"next\" value=\"/finance?month=2026-11&amp;x=&quot;\">"),
            "{form}"
        );
        assert!(
            form.contains(
                "<label>Tên đăng nhập<input type=\"text\" name=\"username\" value=\"&lt;ke&quot;toan&gt;\" \
                 autocomplete=\"username\" required maxlength=\"64\" autofocus></label>"
            ),
            "{form}"
        );
        assert!(
            form.contains(
                "<label>Mật khẩu<input type=\"password\" name=\"password\" autocomplete=\"current-password\" \
                 required maxlength=\"128\"></label><button type=\"submit\" id=\"login-submit\">Đăng nhập</button>"
            ),
            "{form}"
        );
        let ctx = Ctx::new(&HeaderMap::new(), &"/finance/login?lang=en".parse().unwrap());
        let form = login_form(&ctx, "/finance", "", None).into_string();
        assert!(!form.contains("flash"), "{form}");
        assert!(form.contains("<p class=\"hint\">For finance staff (and administrators, read only).</p>"), "{form}");
    }

    #[test]
    fn the_login_form_reads_its_fields() {
        let f: LoginForm =
            read_fields(b"username=ketoan.hn&password=a+b%26c%3D&next=%2Ffinance%3Fmonth%3D2026-11").unwrap();
        assert_eq!(
            (f.username.as_str(), f.password.as_str(), f.next.as_deref()),
            ("ketoan.hn", "a b&c=", Some("/finance?month=2026-11"))
        );
        let f: LoginForm = read_fields(b"").unwrap();
        assert_eq!((f.username.as_str(), f.password.as_str(), f.next), ("", "", None));
        let q: LoginQuery = read_fields(b"next=%2Ffinance%2Fperiods&lang=en").unwrap();
        assert_eq!(q.next.as_deref(), Some("/finance/periods"));
    }
}
