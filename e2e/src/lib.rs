//! Browser journeys in headless Chromium against a real `twofold` server. The journeys
//! arrive with the web app's screens; this crate holds their shared fixtures.
