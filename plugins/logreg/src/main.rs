//! `logreg`: trains a logistic regression model (see the library for the data it takes).

fn main() {
    sandflow_sdk::run(logreg::handle)
}
