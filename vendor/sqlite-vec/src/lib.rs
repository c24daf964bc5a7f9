//! sqlite-vec 0.1.9's entry point (see README.md): register it with
//! `rusqlite::auto_extension::register_auto_extension`.

// the symbols of the bundled SQLite come from libsqlite3-sys (SQLITE_CORE build)
use libsqlite3_sys as _;

extern "C" {
    pub fn sqlite3_vec_init();
}
