use clap::Parser;

fn main() {
    let cli = llmroute::cli::Cli::parse();
    std::process::exit(llmroute::app::main(cli));
}
