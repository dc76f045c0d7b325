//! `.dockerignore` patterns, as the Docker CLI applies them to a build context.
//!
//! Supported: comments, blank lines, `*` and `?` within a path component, `**` across
//! components, `!` exceptions (the last matching pattern wins), leading `/` and `./`, and a
//! pattern naming a directory excluding everything below it. Not supported: character
//! classes (`[a-z]`) and escapes, which are matched literally.

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    /// (pattern, is an exception)
    patterns: Vec<(String, bool)>,
}

impl DockerIgnore {
    /// Parses the contents of a `.dockerignore` file.
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|line| {
                let (negated, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let cleaned = clean(pattern);
                (!cleaned.is_empty()).then_some((cleaned, negated))
            })
            .collect();
        Self { patterns }
    }

    /// Whether any pattern is an exception (then an excluded directory must still be
    /// walked, as something inside may be let back in).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(_, negated)| *negated)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let mut excluded = false;
        for (pattern, negated) in &self.patterns {
            if matches_path_or_parent(pattern, &path) {
                excluded = !negated;
            }
        }
        excluded
    }
}

/// Drops `./`, leading and trailing `/`, and empty or `.` components.
fn clean(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn matches_path_or_parent(pattern: &str, path: &str) -> bool {
    if glob(pattern.as_bytes(), path.as_bytes()) {
        return true;
    }
    path.match_indices('/')
        .any(|(i, _)| glob(pattern.as_bytes(), &path.as_bytes()[..i]))
}

/// `*` and `?` stay within a component; `**` (and `**/`) crosses components.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let (rest, whole_components) = match rest {
                [b'/', tail @ ..] => (tail, true),
                _ => (rest, false),
            };
            (0..=s.len())
                .any(|i| (!whole_components || i == 0 || s[i - 1] == b'/') && glob(rest, &s[i..]))
        }
        [b'*', rest @ ..] => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob(rest, &s[i..])),
        [b'?', rest @ ..] => matches!(s, [c, tail @ ..] if *c != b'/' && glob(rest, tail)),
        [c, rest @ ..] => matches!(s, [d, tail @ ..] if d == c && glob(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_behave_like_the_docker_cli() {
        let ignore = DockerIgnore::parse(
            "# comment\n\n/target\n*.log\n**/secret.txt\ndocs/*.md\n!docs/keep.md\n./tmp/\nca?he\n",
        );
        for (path, excluded) in [
            ("target", true),
            ("target/debug/app", true),
            ("app.log", true),
            ("sub/app.log", false),
            ("secret.txt", true),
            ("a/b/secret.txt", true),
            ("docs/readme.md", true),
            ("docs/keep.md", false),
            ("docs/deep/readme.md", false),
            ("tmp/x", true),
            ("cache", true),
            ("caches", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ignore.excludes(path), excluded, "{path}");
        }
        assert!(ignore.has_exceptions());
    }
}
