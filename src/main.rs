fn main() {
    runner::prims::ssh::raise_open_files_limit();
    std::process::exit(runner::cli::main());
}
