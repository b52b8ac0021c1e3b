-- A statement that writes several tables at once (the completing sign-in) stops with
-- this when a step finds its row taken by another request. The error undoes every write
-- the statement made, so such a statement needs no transaction of its own to be all or
-- nothing. The reason is the error's message; the caller maps it back.
CREATE FUNCTION twofold_refuse(reason TEXT) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TF001', MESSAGE = reason;
END
$$;
