//! The subset of Go's text/template that `docker inspect -f` users write: literal text with actions
//! `{{.Field.Sub}}`, `{{.}}`, `{{json .Field}}` and `{{index .Map "key"}}`. A missing field is an
//! error (Go does the same for struct fields), so a typo never prints an empty string.

use serde_json::Value;

use crate::ModelError;

/// Renders `template` against the JSON value `root`.
pub fn render(template: &str, root: &Value) -> Result<String, ModelError> {
    let err = |reason: String| ModelError::Template { template: template.to_string(), reason };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| err("unclosed action".into()))?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let words: Vec<&str> = action.split_whitespace().collect();
        let text = match words.as_slice() {
            [path] => scalar(lookup(root, path).map_err(err)?),
            ["json", path] => {
                serde_json::to_string(lookup(root, path).map_err(err)?).map_err(|e| err(e.to_string()))?
            }
            ["index", path, key] => {
                let map = lookup(root, path).map_err(err)?;
                let key = key.trim_matches('"');
                scalar(map.get(key).ok_or_else(|| err(format!("map has no key {key:?}")))?)
            }
            _ => return Err(err(format!("unsupported action {action:?}"))),
        };
        out.push_str(&text);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(err("unexpected \"}}\"".into()));
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'a>(root: &'a Value, path: &str) -> Result<&'a Value, String> {
    if path == "." {
        return Ok(root);
    }
    let fields = path
        .strip_prefix('.')
        .ok_or_else(|| format!("function {path:?} not defined"))?;
    let mut v = root;
    for f in fields.split('.') {
        v = v.get(f).ok_or_else(|| format!("can't evaluate field {f}"))?;
    }
    Ok(v)
}

/// Go prints strings bare, numbers and booleans plainly, null as `<no value>`, maps as `map[k:v]`.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(scalar).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter().map(|(k, v)| format!("{k}:{}", scalar(v))).collect::<Vec<_>>().join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_json_and_index() {
        let v = json!({"State": {"Pid": 2778, "Running": true},
                       "NetworkSettings": {"IPAddress": "172.17.0.2",
                                           "Networks": {"bridge": {"Gateway": "172.17.0.1"}}}});
        assert_eq!(render("{{.State.Pid}}", &v), Ok("2778".into()));
        assert_eq!(render("ip={{ .NetworkSettings.IPAddress }}!", &v), Ok("ip=172.17.0.2!".into()));
        assert_eq!(render("{{json .State}}", &v), Ok(r#"{"Pid":2778,"Running":true}"#.into()));
        assert_eq!(
            render(r#"{{index .NetworkSettings.Networks "bridge"}}"#, &v),
            Ok("map[Gateway:172.17.0.1]".into())
        );
        assert_eq!(render("{{.NetworkSettings.Networks.bridge.Gateway}}", &v), Ok("172.17.0.1".into()));
        assert_eq!(render("plain", &v), Ok("plain".into()));
    }

    #[test]
    fn rejects_bad_templates() {
        let v = json!({"State": {}});
        assert!(render("{{.State.Pid}}", &v).is_err());
        assert!(render("{{.State", &v).is_err());
        assert!(render("{{range .State}}", &v).is_err());
        assert!(render("{{State}}", &v).is_err());
        assert!(render("x}}", &v).is_err());
    }
}
