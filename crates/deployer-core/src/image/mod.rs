//! What an image is called: references and content digests.

mod digest;
mod reference;

pub use digest::{Digest, DigestError};
pub use reference::{DEFAULT_TAG, DOCKER_HUB, ImageRef, ReferenceError, ReferenceProblem};
