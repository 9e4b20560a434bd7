CREATE TABLE evidence (
	submission_id VARCHAR(64) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	tps VARCHAR(13) NOT NULL, 
	jpeg BYTEA NOT NULL, 
	received_at FLOAT NOT NULL, 
	PRIMARY KEY (submission_id, sha256)
);

CREATE TABLE pending (
	submission_id VARCHAR(64) NOT NULL, 
	kit_id VARCHAR(64) NOT NULL, 
	cert_serial VARCHAR(64) NOT NULL, 
	seq BIGINT NOT NULL, 
	envelope TEXT NOT NULL, 
	evidence_sha256 VARCHAR(64) NOT NULL, 
	evidence_bytes BIGINT NOT NULL, 
	received_at FLOAT NOT NULL, 
	PRIMARY KEY (submission_id)
);

CREATE TABLE rejections (
	id SERIAL NOT NULL, 
	received_at FLOAT NOT NULL, 
	topic VARCHAR(200) NOT NULL, 
	kit_id VARCHAR(64), 
	submission_id VARCHAR(64), 
	reason VARCHAR(40) NOT NULL, 
	detail TEXT NOT NULL, 
	envelope_sha256 VARCHAR(64), 
	PRIMARY KEY (id)
);

CREATE TABLE results (
	submission_id VARCHAR(64) NOT NULL, 
	kit_id VARCHAR(64) NOT NULL, 
	cert_serial VARCHAR(64) NOT NULL, 
	tps VARCHAR(13) NOT NULL, 
	template_id VARCHAR(64) NOT NULL, 
	form_code VARCHAR(16) NOT NULL, 
	status VARCHAR(8) NOT NULL, 
	seq BIGINT NOT NULL, 
	captured_at VARCHAR(40) NOT NULL, 
	received_at FLOAT NOT NULL, 
	envelope TEXT NOT NULL, 
	envelope_sha256 VARCHAR(64) NOT NULL, 
	evidence_sha256 VARCHAR(64) NOT NULL, 
	values_json TEXT NOT NULL, 
	PRIMARY KEY (submission_id)
);

CREATE INDEX results_kit_seq ON results (kit_id, cert_serial, seq);

CREATE INDEX results_tps ON results (tps, template_id);
