//! Reading HubSpot requests: form bodies and query pairs, the bearer token, tokens in paths.
//!
//! It needs nothing else of the fake; the responders read their requests with it.

use url::Url;
use wiremock::Request;

/// The form body of a POST (none for a JSON body), or the query pairs of any other request.
pub(crate) fn form_of(request: &Request) -> Vec<(String, String)> {
    if request.method == http::Method::POST {
        serde_urlencoded::from_bytes(&request.body).unwrap_or_default()
    } else {
        request.url.query_pairs().into_owned().collect()
    }
}

/// The first value of the field `name`.
pub(crate) fn first<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Whether the body is `application/x-www-form-urlencoded`.
pub(crate) fn is_form(request: &Request) -> bool {
    request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The token of an `Authorization: Bearer ...` header, if there is one.
pub(crate) fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// The `{token}` of `/oauth/v1/.../{token}`, percent-decoded.
pub(crate) fn path_token(url: &Url) -> String {
    let raw = url.path().rsplit('/').next().unwrap_or_default();
    percent_decode(raw)
}

/// `%XX` escapes decoded; a malformed one is kept as it stands.
pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("abc%2Fd%20e%zz%4"), "abc/d e%zz%4");
        assert_eq!(percent_decode("CN-_x"), "CN-_x");
    }
}
