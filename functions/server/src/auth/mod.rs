//! Who is calling: passwords and their policy, opaque single-use tokens,
//! JWT access tokens, rotating refresh tokens, sign-in rate limits, and the
//! [`caller::Caller`] extractor every API route starts from.

pub mod caller;
pub mod credentials;
pub mod jwt;
pub mod opaque;
pub mod rate_limit;
pub mod refresh;
pub mod roles;

pub use caller::{Caller, SignedInUser};
pub use roles::{Permission, Role};
