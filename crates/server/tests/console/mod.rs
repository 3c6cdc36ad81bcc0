//! The web console end to end over HTTP, on both stores: signing in and
//! out, expiry, revocation, the bound on sessions per key
//! ([`sessions`]); every console route × role and every form without its
//! token ([`routes`]); the keys and audit pages.

use super::*;

mod flags;
mod pages;
mod routes;
mod sessions;
mod surveys;
mod trials;

/// A client that does not follow redirects (the tests look at each 303).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value the response sets for cookie `name` (`Some("")` when it
/// removes it).
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=')?;
            (k == name).then(|| val.to_string())
        })
}

/// The whole `Set-Cookie` line for cookie `name`.
pub fn set_cookie_line(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The value of the first hidden `_csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"_csrf\" value=\"")
        .expect("a form token on the page");
    let rest = &html[at + "name=\"_csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A browser's view of the console: its cookies.
pub struct Browser<'a> {
    pub h: &'a Harness,
    pub http: reqwest::Client,
    /// The session cookie, once signed in.
    pub session: Option<String>,
}

impl<'a> Browser<'a> {
    pub fn new(h: &'a Harness) -> Self {
        Browser {
            h,
            http: client(),
            session: None,
        }
    }

    fn cookie_header(&self, pre: Option<&str>) -> String {
        let mut c = Vec::new();
        if let Some(s) = &self.session {
            c.push(format!("commonlab_console={s}"));
        }
        if let Some(p) = pre {
            c.push(format!("commonlab_console_pre={p}"));
        }
        c.join("; ")
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.h.base))
            .header(header::COOKIE, self.cookie_header(None))
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.h.base))
            .header(header::COOKIE, self.cookie_header(None))
            .form(form)
    }

    /// The sign-in attempt with `key` (the form fetched first, as a
    /// browser does): the answer.
    pub async fn try_sign_in(&mut self, key: &str, next: &str) -> reqwest::Response {
        let form = self.get("/console/sign-in").send().await.unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        let pre = set_cookie(&form, "commonlab_console_pre").expect("a pre-session cookie");
        let csrf = csrf_of(&form.text().await.unwrap());
        self.http
            .post(format!("{}/console/sign-in", self.h.base))
            .header(header::COOKIE, self.cookie_header(Some(&pre)))
            .form(&[("_csrf", csrf.as_str()), ("key", key), ("next", next)])
            .send()
            .await
            .unwrap()
    }

    /// Signs in with `key`, which must succeed.
    pub async fn sign_in(&mut self, key: &str) {
        let resp = self.try_sign_in(key, "").await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        self.session = Some(set_cookie(&resp, "commonlab_console").expect("a session cookie"));
    }

    /// The form token of the session (read from the home page).
    pub async fn csrf(&self) -> String {
        let page = self.get("/console/").send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        csrf_of(&page.text().await.unwrap())
    }
}

/// A page's status and body.
pub async fn page(resp: reqwest::Response) -> (StatusCode, String) {
    let s = resp.status();
    (s, resp.text().await.unwrap())
}
