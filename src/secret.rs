//! Secret newtypes: tokens, codes, verifiers, state and the client secret.
//!
//! Every secret is zeroized when dropped, prints as `Name([redacted])` in `Debug`, has no `Display`, and is read only
//! through an explicit `secret()` accessor.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::Arc;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident $(, $clone:ident)?) => {
        secret_type!(@with SecretString, |value: String| SecretString::from(value); $(#[$meta])* $name $(, $clone)?);
    };
    (@shared $(#[$meta:meta])* $name:ident) => {
        secret_type!(
            @with Arc<SecretString>, |value: String| Arc::new(SecretString::from(value));
            $(#[$meta])*
            ///
            /// Cloning shares the value (a reference count), and the last clone dropped zeroizes it.
            $name, Clone
        );
    };
    (@with $inner:ty, $wrap:expr; $(#[$meta:meta])* $name:ident $(, $clone:ident)?) => {
        $(#[$meta])*
        ///
        /// `Debug` prints the type name and `[redacted]`; there is no `Display`. The value is zeroized on drop.
        $(#[derive($clone)])?
        pub struct $name($inner);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(($wrap)(value.into()))
            }

            /// The secret value.
            ///
            /// # Security warning
            /// The returned string is the secret itself. Do not log it, put it in an error message, or keep a copy
            /// that outlives this value (the copy is not zeroized).
            pub fn secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }
    };
}

secret_type!(
    @shared
    /// An OAuth access token, sent to HubSpot as `Authorization: Bearer …`. HubSpot's live for 30 minutes.
    AccessToken
);
secret_type!(
    /// An OAuth refresh token: long-lived, exchanged for new access tokens.
    RefreshToken,
    Clone
);
secret_type!(
    /// The app's client secret, from the HubSpot developer portal.
    ClientSecret,
    Clone
);
secret_type!(
    /// A one-time authorization code from the OAuth callback. Not `Clone`: it is used once.
    AuthorizationCode
);
secret_type!(
    /// A PKCE code verifier (RFC 7636). Not `Clone`: it is sent once, with the code it belongs to.
    PkceVerifier
);
secret_type!(
    /// The OAuth `state` parameter: 256 random bits that tie a callback to the authorization that started it.
    /// Not `Clone`: it is compared once.
    CsrfState
);

impl CsrfState {
    /// A fresh state of 256 random bits, base64url-encoded (43 characters).
    pub fn random() -> Self {
        Self::new(oauth2::CsrfToken::new_random_len(32).into_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-secret-7f3a9c";

    #[test]
    fn debug_is_pinned_and_redacted() {
        assert_eq!(format!("{:?}", AccessToken::new(CANARY)), "AccessToken([redacted])");
        assert_eq!(format!("{:?}", RefreshToken::new(CANARY)), "RefreshToken([redacted])");
        assert_eq!(format!("{:?}", ClientSecret::new(CANARY)), "ClientSecret([redacted])");
        assert_eq!(format!("{:?}", AuthorizationCode::new(CANARY)), "AuthorizationCode([redacted])");
        assert_eq!(format!("{:?}", PkceVerifier::new(CANARY)), "PkceVerifier([redacted])");
        assert_eq!(format!("{:?}", CsrfState::new(CANARY)), "CsrfState([redacted])");
        assert_eq!(format!("{:#?}", Some(AccessToken::new(CANARY))), "Some(\n    AccessToken([redacted]),\n)");
    }

    #[test]
    fn secret_accessor_returns_value() {
        assert_eq!(AccessToken::new(CANARY).secret(), CANARY);
        assert_eq!(RefreshToken::from(CANARY.to_owned()).secret(), CANARY);
    }

    #[test]
    fn random_state_has_256_bits() {
        let a = CsrfState::random();
        let b = CsrfState::random();
        assert_eq!(a.secret().len(), 43);
        assert_ne!(a.secret(), b.secret());
        assert!(a.secret().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
