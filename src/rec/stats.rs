//! A loaded data set's size, under our names and under RecBole's.
//!
//! RecBole prints (`Dataset.__str__`) "The number of users", "Average actions of users", "The
//! number of items", "Average actions of items", "The number of inters" and "The sparsity of the
//! dataset". Its user and item counts include the padding id 0 (`[PAD]`) that it reserves in
//! every id table, so they are ours + 1, and its sparsity is computed with those counts:
//! `1 - inters / (users + 1) / (items + 1)`, printed as a percentage. Its averages divide by the
//! users (items) that occur in the interactions, as ours do. Computed here on *our* loaded data
//! set: RecBole itself also keeps `.item` rows nobody interacted with, which we drop, so on such
//! a folder its item count would be higher.

use super::dataset::Dataset;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Average interactions per user = average sequence length.
    pub avg_seq_len: f64,
    /// Average interactions per item.
    pub avg_item_interactions: f64,
    /// `1 - interactions / (users * items)`.
    pub sparsity: f64,
}

impl Stats {
    pub fn of(dataset: &Dataset) -> Stats {
        let (users, items, inters) = (
            dataset.num_users(),
            dataset.num_items(),
            dataset.num_interactions(),
        );
        let per = |n: usize| inters as f64 / n.max(1) as f64;
        Stats {
            users,
            items,
            interactions: inters,
            avg_seq_len: per(users),
            avg_item_interactions: per(items),
            sparsity: 1.0 - inters as f64 / (users.max(1) as f64 * items.max(1) as f64),
        }
    }

    /// Our names: `users`, `items`, `interactions`, `sparsity`, `avg_seq_len`.
    pub fn to_json(&self) -> Value {
        json!({
            "users": self.users, "items": self.items, "interactions": self.interactions,
            "sparsity": self.sparsity, "avg_seq_len": self.avg_seq_len,
        })
    }

    /// RecBole's names and definitions (ids counted with `[PAD]`; sparsity in percent, as a
    /// string like RecBole prints it).
    pub fn recbole_json(&self) -> Value {
        let (users, items) = (self.users + 1, self.items + 1);
        let sparsity = 1.0 - self.interactions as f64 / users as f64 / items as f64;
        json!({
            "The number of users": users,
            "Average actions of users": self.avg_seq_len,
            "The number of items": items,
            "Average actions of items": self.avg_item_interactions,
            "The number of inters": self.interactions,
            "The sparsity of the dataset": format!("{}%", sparsity * 100.0),
        })
    }
}
