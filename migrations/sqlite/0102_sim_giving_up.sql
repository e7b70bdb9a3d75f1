-- The simulated market gives up reservations as Azure and AWS do.
-- Azure refunds count against a rolling 12-month cap: each retirement records the hour it was
-- made at and, for a return, the refund (0 for exchanges and savings plan returns; NULL only in
-- rows written before this migration).
ALTER TABLE sim_retired ADD COLUMN at_hour BIGINT;
ALTER TABLE sim_retired ADD COLUMN refund_micros BIGINT;
-- Reserved Instance Marketplace listings, one per proposal key. The listed instances are split
-- off their RI into their own ledger row (`listed_id`), which ends when they sell.
CREATE TABLE sim_listings (
    idempotency_key TEXT   PRIMARY KEY,
    listing_id      TEXT   NOT NULL,
    request_id      TEXT   NOT NULL,
    source_id       TEXT   NOT NULL,
    listed_id       TEXT   NOT NULL,
    instances       BIGINT NOT NULL,
    listed_hour     BIGINT NOT NULL,
    sold_hour       BIGINT NOT NULL,
    price_micros    BIGINT NOT NULL,
    proceeds_micros BIGINT NOT NULL
);
