"""A synthetic stream of customer-support traffic: distinct subjects, several people each.

What a product person expects of topics in miniature: password resets, API calls
refused with 401, refunds of a double charge, shoe returns, parcel tracking,
invoices and VAT, cancelling a subscription, exporting data to CSV. Each subject
has many people asking in their own words, in conversations of a few turns
(an opener, follow-ups, sometimes a closing "thanks"), interleaved over a day.
Generic English written for this bench (no public dataset); deterministic per seed.

Used by `bench/topic_support.py` (replays it through `semtrace replay`) and by
`tests/test_topics_support.py` (a smaller draw with the real embedder).

    .venv/bin/python bench/support_stream.py --out support.jsonl [--threads 12] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Per subject: openers (a conversation's first turn) and follow-ups (later turns).
SUBJECTS: dict[str, tuple[list[str], list[str]]] = {
    "password": ([
        "How do I reset my password?",
        "I forgot my password and can't log in to my account",
        "The password reset email never arrives in my inbox",
        "My account got locked after too many wrong password attempts",
        "Where can I change my login password?",
        "The reset password link says it has expired",
        "I need a new password, the old one stopped working",
        "Can you help me recover access to my account? I lost my password",
        "Password reset keeps failing with an error",
        "How often do I have to change my password?",
        "I never received the link to set my password",
        "Is there a way to reset the password from the mobile app?",
    ], [
        "I already checked the spam folder",
        "It still says the reset link is invalid",
        "Can you send the reset email again?",
        "What are the password requirements?",
        "Does the new password need a special character?",
        "The login page still rejects my new password",
        "How long until the account unlocks?",
        "Can I reset it without access to my old email address?",
    ]),
    "api401": ([
        "Our API calls suddenly return 401 Unauthorized",
        "Why does the REST API answer 401 with a valid API key?",
        "Getting HTTP 401 errors from the API since this morning",
        "Every request to the API endpoint fails with 401 unauthorized",
        "The API rejects our bearer token with status 401",
        "Our integration gets 401 responses when calling the API",
        "401 Unauthorized on POST requests to the orders API",
        "The API keeps saying invalid token, 401",
        "Why would a freshly generated API key give 401?",
        "Our webhook calls to your API fail authentication with 401",
        "API authentication fails with 401 after rotating the key",
        "The SDK throws an unauthorized 401 exception on every API call",
    ], [
        "We send the key in the Authorization header",
        "Does the bearer token expire after an hour?",
        "Which scopes does the API token need?",
        "It works with curl but not from our server",
        "Do I need to regenerate the API key?",
        "The OAuth token refresh also returns 401",
        "Is the API key tied to an IP allowlist?",
        "Here is the response header: WWW-Authenticate invalid_token",
    ]),
    "refund": ([
        "I was charged twice for the same order and want a refund",
        "How long does a refund take to show on my card?",
        "I still haven't received my refund",
        "Can I get my money back for a duplicate payment?",
        "Please refund the extra charge on my credit card",
        "You billed me twice this month, I need a refund",
        "When will the refund for my cancelled order be paid?",
        "The refund you promised never reached my bank account",
        "I want a refund for the double charge on my statement",
        "My card was debited two times, how do I get the money back?",
        "Has my refund been processed yet?",
        "Can the refund go to a different card?",
    ], [
        "It has been ten days since you approved it",
        "The bank says no refund has arrived",
        "Can you send me a confirmation of the refund?",
        "Will I get the shipping fee back as well?",
        "Both charges show the same amount",
        "Is the refund paid in full or partly?",
        "Can you refund it to store credit instead?",
        "My statement still shows both payments",
    ]),
    "shoes": ([
        "The shoes I ordered are too small, how do I return them?",
        "I want to return a pair of sneakers that don't fit",
        "Can I exchange my boots for a bigger size?",
        "How do I send back running shoes I bought last week?",
        "These sandals hurt my feet, can I return them?",
        "The heels arrived in the wrong size, I need an exchange",
        "Do I need the original shoe box to return shoes?",
        "I'd like to swap these trainers for half a size up",
        "My new hiking boots are too narrow, how do I return them?",
        "Can I return shoes I have already worn once outside?",
        "The left shoe is damaged, I want to send the pair back",
        "What is the return policy for shoes bought on sale?",
    ], [
        "Do you provide a prepaid return label?",
        "Can I drop the shoes off at a store instead?",
        "The size 42 would fit me better",
        "How long do I have to return the shoes?",
        "Will you send the bigger pair before I return these?",
        "They were a gift, can I still exchange the size?",
        "Should I put the shoes back in the shoe box?",
        "Do the replacement sneakers come in the same colour?",
    ]),
    "tracking": ([
        "Where is my parcel? The tracking has not moved for days",
        "My package was supposed to arrive yesterday",
        "The tracking number you sent doesn't work",
        "The courier says delivered but I never got the package",
        "How can I track my delivery?",
        "My order has been in transit for two weeks",
        "Can you tell me when my parcel will be delivered?",
        "The delivery driver left a note but I was home all day",
        "Tracking shows my package stuck at the depot",
        "Is there a delay with deliveries this week?",
        "My shipment shows returned to sender",
        "Can I change the delivery address of a parcel already shipped?",
    ], [
        "Which courier is delivering it?",
        "Can I pick the parcel up at the depot myself?",
        "The neighbours didn't take it either",
        "Can you open an investigation with the carrier?",
        "Can the driver deliver it on Saturday?",
        "The tracking page shows no update since Monday",
        "Will you resend the package if it is lost?",
        "Can I get a delivery time window?",
    ]),
    "invoice": ([
        "I need an invoice with our company VAT number",
        "Where can I download the invoices for my account?",
        "The VAT on my invoice is wrong",
        "Can you reissue the invoice to our new billing address?",
        "Our accounting team needs a PDF invoice for last quarter",
        "The invoice is missing our purchase order number",
        "How do I add a tax ID to my invoices?",
        "Why does my invoice show sales tax when we are exempt?",
        "Please send a corrected invoice with the right company name",
        "Can I get one combined invoice for all monthly payments?",
        "The invoice currency should be euros, not dollars",
        "I can't find the invoice for the annual plan",
    ], [
        "Our VAT ID is in the billing settings",
        "Can the invoice show the reverse charge note?",
        "We need it for the tax return this week",
        "Can you send it to our accounts payable email?",
        "The billing address changed last month",
        "Please add the purchase order reference on it",
        "Does the invoice list each seat separately?",
        "Can you split the invoice by department?",
    ]),
    "cancel": ([
        "How do I cancel my subscription?",
        "I want to stop my monthly plan before it renews",
        "Please cancel my membership at the end of this period",
        "How can I turn off automatic renewal?",
        "I'd like to end my subscription, where is the cancel button?",
        "Cancel my premium plan, I don't use it anymore",
        "Can I pause the subscription instead of cancelling?",
        "My trial is ending and I don't want to be charged for a subscription",
        "How do I downgrade to the free plan?",
        "Is there a fee for cancelling the yearly subscription early?",
        "I tried to cancel the subscription but it still shows active",
        "Please close my account and end the subscription",
    ], [
        "Will I keep access until the end of the month?",
        "Do I lose my saved projects when the plan ends?",
        "Please confirm the cancellation by email",
        "The renewal date is next Tuesday",
        "Can I resubscribe later with the same account?",
        "It renewed yesterday even though I cancelled",
        "Is auto renewal now off?",
        "Do you offer a discount to stay on the plan?",
    ]),
    "export": ([
        "How do I export my data to a CSV file?",
        "The CSV export is missing some columns",
        "Can I download all my reports as a spreadsheet?",
        "The export to Excel times out on large tables",
        "Is there a way to schedule a daily CSV export?",
        "My exported CSV file has broken characters",
        "How can I export the customer list with all fields?",
        "The export button is greyed out in the dashboard",
        "Can I export the data as JSON instead of CSV?",
        "Exported dates come out in the wrong format in the spreadsheet",
        "How do I export more than ten thousand rows?",
        "The CSV download stops halfway",
    ], [
        "The file opens with all columns in one cell",
        "I need the custom fields in the export too",
        "Can the CSV use semicolons as separator?",
        "The spreadsheet shows the dates as numbers",
        "Can I choose which columns to export?",
        "The export file is empty when I open it",
        "Is there an API to export the same data?",
        "Can the export include archived records?",
    ]),
}
CLOSINGS = ["thanks", "ok thank you", "great, that worked", "thanks for the help", "got it"]


def stream(subjects: list[str] | None = None, *, threads: int = 12, seed: int = 7,
           users: int = 24, tenant: str = "acme", start: datetime | None = None
           ) -> list[dict[str, Any]]:
    """`threads` conversations per subject, dealt to `users` people, spread over a day.

    A conversation is one opener (each used once per subject while it lasts), one to
    three follow-ups, and a closing in about a third of them. Rows carry `subject`
    and `conversation` as answers (`semtrace replay` ignores unknown fields)."""
    rng = random.Random(seed)
    names = subjects or list(SUBJECTS)
    t0 = start or datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    convs: list[tuple[float, str, int, list[str]]] = []
    for s in names:
        openers, follows = SUBJECTS[s]
        picks = rng.sample(openers, len(openers))
        for k in range(threads):
            turns = [picks[k % len(picks)]]
            turns += rng.sample(follows, rng.randint(1, 3))
            if rng.random() < 0.35:
                turns.append(rng.choice(CLOSINGS))
            convs.append((rng.uniform(0, 10 * 3600), s, k, turns))
    rng.shuffle(convs)
    rows: list[dict[str, Any]] = []
    for n, (start_s, s, k, turns) in enumerate(convs):
        at = start_s
        for j, text in enumerate(turns):
            rows.append({"tenant": tenant, "user_id": f"user{n % users:02d}",
                         "ts": t0 + timedelta(seconds=at), "text": text,
                         "subject": s, "conversation": f"{s}-{k}", "turn": j})
            at += rng.uniform(40, 240)
    rows.sort(key=lambda r: (r["ts"], r["user_id"], r["turn"]))
    for i, r in enumerate(rows):
        r["index"] = i
        r["request_id"] = f"support-{seed}-{i}"
        r["ts"] = r["ts"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=12, help="conversations per subject")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rows = stream(threads=args.threads, seed=args.seed)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} prompts, {len(SUBJECTS)} subjects x {args.threads} conversations")


if __name__ == "__main__":
    main()
