//! The web UI in headless Chromium (in progress).
