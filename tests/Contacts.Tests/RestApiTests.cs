using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Tests.Infrastructure;

namespace Crm.Contacts.Tests;

/// <summary>The same calls over REST/JSON (gRPC JSON transcoding), with the same identity token and errors.</summary>
[Collection(ContactsCollection.Name)]
public sealed class RestApiTests(ContactsFixture fx)
{
    private HttpClient Http(string tenant) => fx.Host.Rest(fx.Host.Tokens.Issue(tenant, [Scope.All]));

    [Fact]
    public async Task Should_upsert_and_read_a_contact_over_rest_with_korean_phone_normalised()
    {
        var t = ContactsFixture.NewTenant();
        using var http = Http(t);

        var upsert = await http.PostAsJsonAsync("/v1/contacts", new { externalId = "rest-1", name = "김민준", phone = "010-1234-5678" });
        Assert.Equal(HttpStatusCode.OK, upsert.StatusCode);
        var created = await upsert.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(created.GetProperty("created").GetBoolean());
        Assert.Equal("+821012345678", created.GetProperty("contact").GetProperty("phone").GetString());

        var byExternalId = await http.GetFromJsonAsync<JsonElement>("/v1/contacts/external/rest-1");
        Assert.Equal("김민준", byExternalId.GetProperty("name").GetString());
        var id = byExternalId.GetProperty("id").GetString();
        var byId = await http.GetFromJsonAsync<JsonElement>($"/v1/contacts/{id}");
        Assert.Equal("rest-1", byId.GetProperty("externalId").GetString());
    }

    [Fact]
    public async Task Should_answer_bad_input_with_400_naming_the_field_and_refuse_a_missing_token()
    {
        var t = ContactsFixture.NewTenant();
        using var http = Http(t);
        var bad = await http.PostAsJsonAsync("/v1/contacts", new { externalId = "rest-2", phone = "12" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var error = await bad.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(3, error.GetProperty("code").GetInt32()); // INVALID_ARGUMENT
        var violation = error.GetProperty("details")[0].GetProperty("fieldViolations")[0];
        Assert.Equal("phone", violation.GetProperty("field").GetString());

        using var anonymous = fx.Host.Rest(null);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/contacts/external/rest-1")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/v1/contacts/external/nobody")).StatusCode);
    }
}
