//! The ini files other servers are configured with: uWSGI's (a key may
//! repeat, each line is one value) and PasteDeploy's (Python's
//! ConfigParser: `key = value` or `key: value`, indented lines continue a
//! value, the last of a repeated key wins).

/// One `key = value` line, in its section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based, of the key's line.
    pub line: usize,
}

/// Which reading of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Uwsgi,
    ConfigParser,
}

/// Every entry of `text` in order. A line that is neither a section, a
/// comment nor `key = value` is refused with its number (uWSGI takes a
/// bare word as `key = true`).
pub fn entries(text: &str, dialect: Dialect) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::new();
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        let continues = raw.starts_with([' ', '\t']) && !trimmed.is_empty();
        if dialect == Dialect::ConfigParser
            && continues
            && let Some(last) = out.last_mut().filter(|e| e.section == section)
        {
            if !trimmed.starts_with(['#', ';']) {
                last.value.push('\n');
                last.value.push_str(trimmed);
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {line}: a section is [NAME]: {trimmed}"))?;
            section = name.trim().to_string();
            continue;
        }
        let split = match dialect {
            Dialect::Uwsgi => trimmed.split_once('='),
            Dialect::ConfigParser => {
                let at = trimmed.find(['=', ':']);
                at.map(|i| (&trimmed[..i], &trimmed[i + 1..]))
            }
        };
        let (key, value) = match split {
            Some((key, value)) => (key.trim(), value.trim()),
            None if dialect == Dialect::Uwsgi => (trimmed, "true"),
            None => return Err(format!("line {line}: not `key = value`: {trimmed}")),
        };
        if key.is_empty() {
            return Err(format!("line {line}: no key before the `=`: {trimmed}"));
        }
        out.push(Entry {
            section: section.clone(),
            key: key.to_string(),
            value: value.to_string(),
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uwsgi_lines_repeat_and_bare_words_are_true() {
        let text = "; comment\n[uwsgi]\nenv = A=1\nenv = B=2\nmaster\n# more\n[other]\nx=y\n";
        let got = entries(text, Dialect::Uwsgi).unwrap();
        let flat: Vec<(&str, &str, &str, usize)> = got
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            flat,
            [
                ("uwsgi", "env", "A=1", 3),
                ("uwsgi", "env", "B=2", 4),
                ("uwsgi", "master", "true", 5),
                ("other", "x", "y", 8)
            ]
        );
    }

    #[test]
    fn configparser_continuations_and_colons() {
        let text = "[app:main]\nuse: egg:x\npipeline =\n    a\n    b\n[server:main]\nport = 9\n";
        let got = entries(text, Dialect::ConfigParser).unwrap();
        assert_eq!(got[0].key, "use");
        assert_eq!(got[0].value, "egg:x");
        assert_eq!(got[1].value, "\na\nb");
        assert_eq!(
            (got[2].section.as_str(), got[2].key.as_str()),
            ("server:main", "port")
        );
    }

    #[test]
    fn broken_lines_are_named() {
        assert!(
            entries("[uwsgi\n", Dialect::Uwsgi)
                .unwrap_err()
                .starts_with("line 1")
        );
        assert!(
            entries("[s]\n= x\n", Dialect::Uwsgi)
                .unwrap_err()
                .starts_with("line 2")
        );
        assert!(entries("[s]\nword\n", Dialect::ConfigParser).is_err());
    }
}
