-- spock 0.1.0 -> 0.2.0 (run by ALTER EXTENSION spock UPDATE, which each
-- database's manager does by itself when the server runs the 0.2.0 library).
--
-- The objects 0.2.0 adds, exactly as a fresh CREATE EXTENSION spock of 0.2.0
-- creates them (cargo xtask test compares the two catalogs).

CREATE FUNCTION spock.sub_alter_interface(subscription_name name, interface_name name) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_interface_wrapper';
REVOKE EXECUTE ON FUNCTION spock.sub_alter_interface(name, name) FROM PUBLIC;

CREATE FUNCTION spock.terminate_active_transactions() RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'terminate_active_transactions_wrapper';
REVOKE EXECUTE ON FUNCTION spock.terminate_active_transactions() FROM PUBLIC;

CREATE FUNCTION spock.sub_alter_options(subscription_name name, options jsonb) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_options_wrapper';
REVOKE EXECUTE ON FUNCTION spock.sub_alter_options(name, jsonb) FROM PUBLIC;

CREATE FUNCTION spock.get_apply_worker_status(OUT worker_pid bigint, OUT worker_dboid integer,
    OUT worker_subid bigint, OUT worker_status text)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'get_apply_worker_status_wrapper';
REVOKE EXECUTE ON FUNCTION spock.get_apply_worker_status() FROM PUBLIC;

-- Revoked, then granted, as sql/privileges.sql does, so the ACL is the same.
CREATE FUNCTION spock.get_country() RETURNS text STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'get_country_wrapper';
REVOKE EXECUTE ON FUNCTION spock.get_country() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION spock.get_country() TO PUBLIC;
