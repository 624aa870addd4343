"""HTTP plumbing of the consumer API, free of domain rules: bearer tokens and the gate that checks them
(:mod:`.auth`), RFC 9457 problem documents (:mod:`.problems`), request logs and metrics (:mod:`.observability`),
streamed form parsing (:mod:`.multipart`) and HTTP Range (:mod:`.ranges`)."""
