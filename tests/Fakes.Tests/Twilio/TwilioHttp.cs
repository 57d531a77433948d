using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Crm.Fakes.Twilio;

namespace Crm.Fakes.Tests.Twilio;

/// <summary>A bare HttpClient caller of the Messages API, as the Delivery service would write one.</summary>
internal sealed class TwilioHttp(FakeTwilioServer twilio, TimeSpan? timeout = null) : IDisposable
{
    private readonly HttpClient _http = new() { Timeout = timeout ?? TimeSpan.FromSeconds(10) };

    public async Task<TwilioReply> SendAsync(
        IEnumerable<KeyValuePair<string, string>> fields, string? accountSid = null, string? authToken = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, twilio.MessagesUri)
        {
            Content = new FormUrlEncodedContent(fields),
        };
        var credentials = $"{accountSid ?? twilio.AccountSid}:{authToken ?? twilio.AuthToken}";
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(credentials)));
        using var response = await _http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        return new TwilioReply((int)response.StatusCode, response.Headers.RetryAfter?.Delta, JsonDocument.Parse(body).RootElement.Clone());
    }

    public Task<TwilioReply> SmsAsync(string to, string body, string from = "+15005550006", string? statusCallback = null)
    {
        var fields = new List<KeyValuePair<string, string>> { new("To", to), new("From", from), new("Body", body) };
        if (statusCallback is not null)
        {
            fields.Add(new("StatusCallback", statusCallback));
        }
        return SendAsync(fields);
    }

    public void Dispose() => _http.Dispose();
}

internal sealed record TwilioReply(int Status, TimeSpan? RetryAfter, JsonElement Json)
{
    public string? Str(string name) => Json.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public int? ErrorCode => Json.TryGetProperty("code", out var v) ? v.GetInt32() : null;
}
