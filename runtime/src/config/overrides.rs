//! `--set field.path=value`: overrides of any pipeline field, like Spark's `--conf`.

use toml_edit::{DocumentMut, Item, Table, Value};

/// Applies `path=value` overrides to the pipeline text, keeping its layout (so that errors
/// still point at the user's lines). `value` is read as TOML (`2`, `true`, `"x"`) and, failing
/// that, as a plain string (`2s`). Path segments that are numbers index arrays (`steps.0.plugin`).
pub fn apply(text: &str, overrides: &[String]) -> Result<String, String> {
    if overrides.is_empty() {
        return Ok(text.to_owned());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("cannot apply --set to a file that is not valid TOML: {e}"))?;
    for assignment in overrides {
        let (path, raw) = assignment
            .split_once('=')
            .ok_or_else(|| format!("--set '{assignment}': expected field.path=value"))?;
        let value = raw
            .trim()
            .parse::<Value>()
            .unwrap_or_else(|_| Value::from(raw.trim()));
        set(doc.as_item_mut(), path.trim(), value)
            .map_err(|e| format!("--set '{assignment}': {e}"))?;
    }
    Ok(doc.to_string())
}

fn set(root: &mut Item, path: &str, value: Value) -> Result<(), String> {
    if path.split('.').any(str::is_empty) {
        return Err(format!("malformed field path '{path}'"));
    }
    let mut item = root;
    let mut here = String::new();
    for segment in path.split('.') {
        if !here.is_empty() {
            here.push('.');
        }
        here.push_str(segment);
        item = match segment.parse::<usize>() {
            Ok(index) => item
                .get_mut(index)
                .ok_or_else(|| format!("'{here}' does not exist (no entry {index} there)"))?,
            Err(_) => child(item, segment, &here)?,
        };
    }
    *item = Item::Value(value);
    Ok(())
}

/// The field `key` of a table item, created (as an empty table) when missing.
fn child<'a>(item: &'a mut Item, key: &str, here: &str) -> Result<&'a mut Item, String> {
    if item.is_none() {
        *item = Item::Table(Table::new());
    }
    // A placeholder of the parent's style; the caller overwrites or descends into it.
    let placeholder = if item.is_inline_table() {
        Item::Value(Value::InlineTable(Default::default()))
    } else {
        Item::Table(Table::new())
    };
    let table = item
        .as_table_like_mut()
        .ok_or_else(|| format!("'{here}': its parent is not a table"))?;
    if !table.contains_key(key) {
        table.insert(key, placeholder);
    }
    Ok(table.get_mut(key).expect("inserted above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "[job]\nbatch-interval = \"1s\"\n\n[[steps]]\nop = \"map\"\nparams = { a = 1 }\n";

    #[test]
    fn sets_existing_and_new_fields_keeping_layout() {
        let out = apply(
            FILE,
            &[
                "job.batch-interval=2s".into(),
                "job.workers=3".into(),
                "steps.0.op=\"filter\"".into(),
                "steps.0.params.b=true".into(),
            ],
        )
        .unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(doc["job"]["batch-interval"].as_str(), Some("2s"));
        assert_eq!(doc["job"]["workers"].as_integer(), Some(3));
        assert_eq!(doc["steps"][0]["op"].as_str(), Some("filter"));
        assert_eq!(doc["steps"][0]["params"]["b"].as_bool(), Some(true));
        // Existing lines keep their text and order; a new key adds a line to its table.
        assert!(out.starts_with("[job]\nbatch-interval = \"2s\"\n"), "{out}");
        assert!(out.contains("\n[[steps]]\nop = \"filter\"\n"), "{out}");
    }

    #[test]
    fn explains_bad_paths() {
        let err = apply(FILE, &["steps.4.op=map".into()]).unwrap_err();
        assert!(err.contains("'steps.4' does not exist"), "{err}");
        let err = apply(FILE, &["job.batch-interval.x=1".into()]).unwrap_err();
        assert!(err.contains("not a table"), "{err}");
        let err = apply(FILE, &["nonsense".into()]).unwrap_err();
        assert!(err.contains("expected field.path=value"), "{err}");
    }
}
