//! The ZITADEL client against the stand-in: token verification and the management API. One test
//! binary, one module per concern.

mod management;
mod verify;
