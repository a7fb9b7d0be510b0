//! modifier1 30: uWSGI's deprecated "manage PATH_INFO" hack.
//!
//! A front server configured with `uwsgi_modifier1 30` and
//! `uwsgi_param SCRIPT_NAME /app` sends PATH_INFO with the mount prefix
//! still in it (`/app/hello`). uWSGI then cuts `len(SCRIPT_NAME)` bytes off
//! PATH_INFO without looking at them; here the cut is made only when it is
//! right: a SCRIPT_NAME var was sent, and it is a prefix of PATH_INFO that
//! ends at a path-segment boundary (`/app` of `/app/hello` or of `/app`,
//! not of `/application`). Otherwise PATH_INFO is passed on as sent, with a
//! warning for the operator. The first SCRIPT_NAME and PATH_INFO count, as
//! in the core's environ.

use rustgi_model::Param;

use rustgi_model::show;

/// Cuts SCRIPT_NAME off the front of PATH_INFO in `params` (a zero-copy
/// slice of the same bytes); returns a warning when it cannot.
pub(crate) fn strip(params: &mut [Param]) -> Option<String> {
    let Some(script) = params.iter().find(|p| p.name.as_ref() == b"SCRIPT_NAME") else {
        return Some(
            "uwsgi modifier1 30 without a SCRIPT_NAME var: PATH_INFO is passed on as sent \
             (add `uwsgi_param SCRIPT_NAME /prefix;` or the like, or drop the modifier)"
                .to_owned(),
        );
    };
    let script = script.value.clone();
    let path = params
        .iter_mut()
        .find(|p| p.name.as_ref() == b"PATH_INFO")?;
    let rest = path.value.strip_prefix(script.as_ref());
    if script.is_empty() || rest.is_some_and(|rest| matches!(rest.first(), None | Some(b'/'))) {
        path.value = path.value.slice(script.len()..);
        None
    } else {
        Some(format!(
            "uwsgi modifier1 30: SCRIPT_NAME {:?} is not a prefix of PATH_INFO {:?} at a path-segment \
             boundary; PATH_INFO is passed on as sent",
            show::field(&script),
            show::field(&path.value)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn params(pairs: &[(&'static str, &'static str)]) -> Vec<Param> {
        pairs.iter().map(|&(n, v)| Param::new(n, v)).collect()
    }

    fn path_info(params: &[Param]) -> &[u8] {
        params
            .iter()
            .find(|p| p.name.as_ref() == b"PATH_INFO")
            .unwrap()
            .value
            .as_ref()
    }

    #[test]
    fn strips_a_prefix_at_a_segment_boundary() {
        for (path, expected) in [("/app/hello", "/hello"), ("/app", ""), ("/app/", "/")] {
            let mut p = params(&[("PATH_INFO", path), ("SCRIPT_NAME", "/app")]);
            assert_eq!(strip(&mut p), None);
            assert_eq!(path_info(&p), expected.as_bytes(), "{path}");
        }
    }

    #[test]
    fn the_cut_is_a_slice_of_the_same_bytes() {
        let value = Bytes::from_static(b"/app/hello");
        let mut p = vec![
            Param::new("SCRIPT_NAME", "/app"),
            Param::new("PATH_INFO", value.clone()),
        ];
        strip(&mut p);
        assert_eq!(p[1].value.as_ptr(), value[4..].as_ptr());
    }

    #[test]
    fn leaves_path_info_when_script_name_is_not_a_prefix() {
        for (script, path) in [
            ("/app", "/application/x"),
            ("/app", "/other"),
            ("/app", "/ap"),
            ("/app/", "/app/x"),
            ("/", "/x"),
        ] {
            let mut p = params(&[("SCRIPT_NAME", script), ("PATH_INFO", path)]);
            let warning = strip(&mut p).expect("a warning");
            assert!(
                warning.contains("is not a prefix of PATH_INFO"),
                "{warning}"
            );
            assert_eq!(path_info(&p), path.as_bytes());
        }
        let mut p = params(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/other")]);
        assert_eq!(
            strip(&mut p).unwrap(),
            "uwsgi modifier1 30: SCRIPT_NAME \"/app\" is not a prefix of PATH_INFO \"/other\" at a \
             path-segment boundary; PATH_INFO is passed on as sent"
        );
    }

    #[test]
    fn without_script_name_nothing_is_cut() {
        let mut p = params(&[("PATH_INFO", "/app/x")]);
        assert!(strip(&mut p).unwrap().contains("without a SCRIPT_NAME var"));
        assert_eq!(path_info(&p), b"/app/x");
    }

    #[test]
    fn an_empty_script_name_or_no_path_info_is_fine() {
        let mut p = params(&[("SCRIPT_NAME", ""), ("PATH_INFO", "/x")]);
        assert_eq!(strip(&mut p), None);
        assert_eq!(path_info(&p), b"/x");
        let mut p = params(&[("SCRIPT_NAME", "/app")]);
        assert_eq!(strip(&mut p), None);
    }

    #[test]
    fn the_first_of_repeated_vars_counts() {
        let mut p = params(&[
            ("SCRIPT_NAME", "/a"),
            ("SCRIPT_NAME", "/b"),
            ("PATH_INFO", "/a/x"),
            ("PATH_INFO", "/b/y"),
        ]);
        assert_eq!(strip(&mut p), None);
        assert_eq!(p[2].value.as_ref(), b"/x");
        assert_eq!(p[3].value.as_ref(), b"/b/y");
    }
}
