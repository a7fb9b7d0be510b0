// The paths of the repository this binary is built from, for build.rs's
// "-dirty" marker and the test that checks it (both include this file).
// Changes elsewhere (README, tests) do not change the binary.
const BUILT_FROM: [&str; 4] = ["crates", "protocols", "Cargo.toml", "Cargo.lock"];
