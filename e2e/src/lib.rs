//! Browser journeys in headless Chromium against a real `twofold` server, a real SMTP
//! server and the built web app. The journeys live in `tests/journeys`; this library
//! only carries the element ids, defined once in the web app and shared here so a
//! renamed id breaks the build of the tests rather than their run.

pub mod ids {
    include!("../../web/src/ids.rs");
}
