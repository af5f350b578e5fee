"""The real Weaviate stores client-supplied vectors and returns nearest neighbours over gRPC."""

from __future__ import annotations

import pytest

from servers.launch import WeaviateServer

pytestmark = pytest.mark.weaviate


def test_store_and_query_vectors(weaviate_server: WeaviateServer) -> None:
    import weaviate
    from weaviate.classes.config import Configure, DataType, Property

    client = weaviate.connect_to_local(
        host=weaviate_server.host,
        port=weaviate_server.http_port,
        grpc_port=weaviate_server.grpc_port,
    )
    try:
        if client.collections.exists("ServerSmoke"):
            client.collections.delete("ServerSmoke")
        coll = client.collections.create(
            "ServerSmoke",
            properties=[Property(name="text", data_type=DataType.TEXT)],
            vector_config=Configure.Vectors.self_provided(),
        )
        coll.data.insert_many(
            [
                weaviate.classes.data.DataObject(
                    properties={"text": "north"}, vector=[1.0, 0.0, 0.0]
                ),
                weaviate.classes.data.DataObject(
                    properties={"text": "east"}, vector=[0.0, 1.0, 0.0]
                ),
                weaviate.classes.data.DataObject(properties={"text": "up"}, vector=[0.0, 0.0, 1.0]),
            ]
        )

        result = coll.query.near_vector(near_vector=[0.1, 0.9, 0.0], limit=2)

        assert [o.properties["text"] for o in result.objects] == ["east", "north"]
    finally:
        client.close()
