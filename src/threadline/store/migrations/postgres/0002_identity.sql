-- The identity directory: a projection of the customer streams (threadline.identity).
-- identifier is kind:value in canonical form.
CREATE TABLE identity_links (
    identifier  text    COLLATE "C" PRIMARY KEY,
    kind        text    NOT NULL,
    value       text    NOT NULL,
    customer_id text    COLLATE "C" NOT NULL,
    verified    boolean NOT NULL,
    method      text    NOT NULL,
    linked_by   text    NOT NULL,
    position    bigint  NOT NULL
);
CREATE INDEX identity_links_customer ON identity_links (customer_id, identifier);

CREATE TABLE identity_merges (
    customer_id   text COLLATE "C" PRIMARY KEY,
    into_customer text COLLATE "C" NOT NULL,
    merge_id      text NOT NULL
);
CREATE INDEX identity_merges_into ON identity_merges (into_customer);

CREATE TABLE identity_conflicts (
    conflict_id text    COLLATE "C" PRIMARY KEY,
    identifier  text    NOT NULL,
    claimed_for text    NOT NULL,
    held_by     text    NOT NULL,
    verified    boolean NOT NULL,
    method      text    NOT NULL,
    linked_by   text    NOT NULL,
    reason      text    NOT NULL,
    status      text    NOT NULL,
    position    bigint  NOT NULL,
    resolved_by text
);
CREATE INDEX identity_conflicts_status ON identity_conflicts (status, position);

-- The last log position folded into the tables above, written in the same transaction.
CREATE TABLE identity_checkpoint (
    name     text   COLLATE "C" PRIMARY KEY,
    position bigint NOT NULL
);
