//! Prints the OpenAPI document of the controller's API.

fn main() {
    let doc = warden_server::openapi();
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).expect("serialises")
    );
}
