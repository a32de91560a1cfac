import httpx

from tests.fixtures.factories import make_graph


async def test_graph(client: httpx.AsyncClient) -> None:
    g = await make_graph(client)
    assert g["site"]["name"] == "www.example.com"
