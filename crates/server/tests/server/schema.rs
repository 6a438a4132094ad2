//! A small validator for the subset of JSON Schema that utoipa writes into
//! OpenAPI 3.1 documents (`$ref`, `type` incl. arrays of types, `oneOf`,
//! `anyOf`, `allOf`, `properties`, `required`, `items`, `enum`,
//! `additionalProperties`), used to check every real response of the tests
//! against the served document. It is strict both ways: a response field
//! the schema does not declare is an error too (unless the schema allows
//! additional properties), so the document cannot fall behind the code.

use serde_json::Value;

pub struct Spec {
    pub doc: Value,
}

impl Spec {
    pub async fn fetch(client: &reqwest::Client, base: &str) -> Spec {
        let doc: Value = client
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .expect("fetch openapi.json")
            .json()
            .await
            .expect("openapi.json is JSON");
        Spec { doc }
    }

    /// The operation object of `method` on `template`.
    pub fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(template)?
            .get(method.to_ascii_lowercase())
    }

    /// Checks that `status` is a documented response of the operation and
    /// that `body` matches its JSON schema.
    pub fn check_response(
        &self,
        method: &str,
        template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let op = self
            .operation(method, template)
            .ok_or_else(|| format!("{method} {template} is not in the OpenAPI document"))?;
        let response = op["responses"]
            .get(status.to_string())
            .ok_or_else(|| format!("status {status} is not documented for {method} {template}"))?;
        let Some(content) = response.get("content") else {
            return if body.is_null() {
                Ok(())
            } else {
                Err("the response has a body but none is documented".into())
            };
        };
        let Some(schema) = content
            .get("application/json")
            .and_then(|c| c.get("schema"))
        else {
            return Ok(()); // not JSON (event streams): checked elsewhere
        };
        self.validate(schema, body, "$")
    }

    /// Checks `body` against the operation's documented JSON request body.
    pub fn check_request(&self, method: &str, template: &str, body: &Value) -> Result<(), String> {
        let op = self
            .operation(method, template)
            .ok_or_else(|| format!("{method} {template} is not in the OpenAPI document"))?;
        let schema = op
            .get("requestBody")
            .and_then(|b| b.get("content"))
            .and_then(|c| c.get("application/json"))
            .and_then(|c| c.get("schema"));
        match schema {
            Some(schema) => self.validate(schema, body, "$"),
            // No documented body: only an empty object is harmless.
            None if body == &Value::Object(Default::default()) => Ok(()),
            None => Err("the operation documents no request body".into()),
        }
    }

    /// Resolves `#/components/schemas/X`.
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> Result<&'a Value, String> {
        match schema.get("$ref").and_then(Value::as_str) {
            None => Ok(schema),
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .ok_or_else(|| format!("unsupported $ref {r}"))?;
                self.doc["components"]["schemas"]
                    .get(name)
                    .ok_or_else(|| format!("dangling $ref {r}"))
            }
        }
    }

    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema)?;
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(s, value, at)?;
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = schema.get(key).and_then(Value::as_array) {
                let errors: Vec<String> = any
                    .iter()
                    .filter_map(|s| self.validate(s, value, at).err())
                    .collect();
                let matched = any.len() - errors.len();
                if matched == 0 || (key == "oneOf" && matched > 1) {
                    return Err(format!(
                        "{at}: {matched} of the {key} alternatives match ({})",
                        errors.join("; ")
                    ));
                }
            }
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => return Err(format!("{at}: odd type {t}")),
            };
            if !types.iter().any(|t| type_matches(t, value)) {
                return Err(format!("{at}: expected {types:?}, got {value}"));
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
        if let Value::Object(map) = value {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        return Err(format!("{at}: required field {r} is missing"));
                    }
                }
            }
            if let Some(props) = props {
                for (k, v) in map {
                    match props.get(k) {
                        Some(s) => self.validate(s, v, &format!("{at}.{k}"))?,
                        None => {
                            if schema.get("additionalProperties").is_none() {
                                return Err(format!("{at}: field {k} is not documented"));
                            }
                        }
                    }
                }
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, v) in items.iter().enumerate() {
                self.validate(item_schema, v, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}
