//! Prints the adapter's query texts for a database (first argument, default `nova`), each as
//! `-- name` followed by the statement and `;`, for `scripts/check-clickhouse-ddl.py`.

fn main() {
    let database = std::env::args()
        .nth(1)
        .unwrap_or_else(|| vrs_adapter_clickhouse::DEFAULT_DATABASE.to_owned());
    for (name, sql) in vrs_adapter_clickhouse::queries::sample_queries(&database) {
        println!("-- {name}\n{sql};\n");
    }
}
