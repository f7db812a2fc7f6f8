//! Handing an authorize URL to a browser without putting it in any command line.
//!
//! A browser is started through a launcher (`xdg-open URL`, `$BROWSER URL`, `open URL`), and a
//! command line is readable by every local user in `/proc/PID/cmdline`: the URL's `state` and
//! `code_challenge` there would let another user finish the sign-in with *their* account into
//! ours (authorization-code injection). So the launcher gets `file:///…/login-RANDOM.html`
//! instead: a page written 0600 in the home (a 0700 directory), which sends the browser on to the
//! real URL (meta refresh, `location.replace`, and a link). The page is removed when the
//! [`RedirectPage`] is dropped, which callers do when the login ends. Opening the browser itself
//! is the caller's (the binary's) business; this module only writes and removes the page.

use crate::home::{HomeError, random_suffix, write_private};
use std::path::{Path, PathBuf};

/// A redirect page on disk; removed on drop.
#[derive(Debug)]
pub struct RedirectPage {
    path: PathBuf,
}

impl RedirectPage {
    /// Write a page in `dir` (made 0700 if needed; the page 0600) that redirects to `url`.
    pub fn write(dir: &Path, url: &str) -> Result<RedirectPage, HomeError> {
        let path = dir.join(format!("login-{}.html", random_suffix()));
        write_private(&path, page(url).as_bytes())?;
        Ok(RedirectPage { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `file://` URL to give the browser launcher (nothing secret in it).
    pub fn file_url(&self) -> String {
        url::Url::from_file_path(&self.path)
            .map(String::from)
            .unwrap_or_else(|()| format!("file://{}", self.path.display()))
    }
}

impl Drop for RedirectPage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The HTML: the URL escaped for an attribute, and for a script as a JSON string with `<`, `>`
/// and `&` as `\u` escapes (so no `</script>` can end the script early).
fn page(url: &str) -> String {
    let attr = url.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;");
    let js = serde_json::Value::String(url.to_string())
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta http-equiv=\"refresh\" content=\"0;url={attr}\"><title>llmx sign-in</title>\
         <script>location.replace({js});</script></head>\
         <body><p><a href=\"{attr}\">Continue to the sign-in page</a></p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn redirect_page_is_private_escaped_and_removed_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("h");
        let url = "https://i.example/oauth/authorize?a=1&state=S\"</script><b>";
        let p = RedirectPage::write(&dir, url).unwrap();
        assert_eq!(std::fs::metadata(p.path()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let html = std::fs::read_to_string(p.path()).unwrap();
        assert!(
            html.contains("content=\"0;url=https://i.example/oauth/authorize?a=1&amp;state=S&quot;&lt;/script&gt;"),
            "{html}"
        );
        assert_eq!(html.matches("</script>").count(), 1, "{html}");
        let file_url = p.file_url();
        assert!(file_url.starts_with("file:///") && !file_url.contains("state"), "{file_url}");
        let path = p.path().to_path_buf();
        drop(p);
        assert!(!path.exists());
    }
}
