//! The `wa-sim` binary's phones as Signal peers: two contacts (numbers without a companion)
//! message each other, 1:1 and in a group, entirely inside the sim; each phone decrypts what
//! the other encrypted (`POST /send`, `GET /inbox`); and a contact writes to a wafleet
//! account, whose phone decrypts its copy while the worker stays online.

use serde_json::json;
use wa_sim::harness::{Sim, Volume};

use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

const ALICE: &str = "15550003333";
const BOB: &str = "15550004444";

#[test]
fn two_contacts_message_each_other_and_a_group_through_the_sim_binary() {
    let sim = Sim::start(&[]);
    let first = sim.send_from_phone(ALICE, BOB, "hello Bob");
    let row = sim.wait_inbox(BOB, &first, STATE_DEADLINE);
    assert_eq!(row["kind"], "text", "{row}");
    assert_eq!(row["text"], "hello Bob");
    assert_eq!(row["chat"], format!("{ALICE}@s.whatsapp.net"));

    let reply = sim.send_from_phone(BOB, &format!("{ALICE}@s.whatsapp.net"), "hi Alice");
    let row = sim.wait_inbox(ALICE, &reply, STATE_DEADLINE);
    assert_eq!(row["text"], "hi Alice", "{row}");

    let (status, group) = sim.post(
        "/group",
        &json!({"subject": "pair", "participants": [ALICE, BOB]}),
    );
    assert_eq!(status, 200, "{group}");
    let group = group["jid"].as_str().expect("jid").to_owned();
    let in_group = sim.send_from_phone(BOB, &group, "to both of us");
    let row = sim.wait_inbox(ALICE, &in_group, STATE_DEADLINE);
    assert_eq!(row["text"], "to both of us", "{row}");
    assert_eq!(row["chat"], group.as_str());
    assert!(
        sim.inbox(ALICE)
            .iter()
            .chain(sim.inbox(BOB).iter())
            .all(|m| m["kind"] != "undecryptable"),
        "nothing failed"
    );
}

#[test]
fn a_contact_writes_to_a_wafleet_account_and_its_phone_decrypts_it() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let jid = pair(&sup, &sim, "shop", "15550001111");
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    let id = sim.send_from_phone(ALICE, "15550001111", "do you have it in blue?");
    let row = sim.wait_inbox("15550001111", &id, STATE_DEADLINE);
    assert_eq!(row["text"], "do you have it in blue?", "{row}");
    // The worker's companion got its copy; the worker is still online.
    sim.wait_logged_in(&jid, STATE_DEADLINE);
}
