//! Opening the sign-in page in the user's browser for `llmx login` and `llmx auth tunnel`,
//! through a local redirect page (`llmx::auth::browser`): the launcher's command line holds only
//! `file:///…/login-RANDOM.html`, never the authorize URL. The page is removed by [`Launcher::close`]
//! (or on drop) once the login is over.

use llmx::auth::browser::RedirectPage;
use std::path::PathBuf;
use std::sync::Mutex;

/// Opens the browser at most once per login and keeps the page until the login ends.
pub struct Launcher {
    dir: PathBuf,
    page: Mutex<Option<RedirectPage>>,
}

impl Launcher {
    /// Pages are written in `dir` (the llmx home, 0700).
    pub fn new(dir: PathBuf) -> Launcher {
        Launcher { dir, page: Mutex::new(None) }
    }

    /// Write the redirect page for `url` and start the browser on it, without waiting for it
    /// (webbrowser may wait for a text-mode browser; never let it hold up the login).
    pub fn open(&self, url: &str) {
        let page = match RedirectPage::write(&self.dir, url) {
            Ok(p) => p,
            Err(e) => {
                crate::cli::output::err_lines(&[format!(
                    "Could not prepare the browser page ({e}); open the URL above yourself."
                )]);
                return;
            }
        };
        let file_url = page.file_url();
        if let Ok(mut slot) = self.page.lock() {
            *slot = Some(page);
        }
        std::thread::spawn(move || {
            if let Err(e) = webbrowser::open(&file_url) {
                crate::cli::output::err_lines(&[format!(
                    "Could not open a browser ({e}); open the URL above yourself."
                )]);
            }
        });
    }

    /// Remove the page (the login is over).
    pub fn close(&self) {
        if let Ok(mut slot) = self.page.lock() {
            slot.take();
        }
    }
}
